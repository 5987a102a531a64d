package core

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/orgplane/orgplane/internal/crypto"
)

// The fuzz targets below check the input rules against independent
// oracles. Seeds live in testdata/fuzz; run one with, e.g.,
//
//	go test ./internal/core -run '^$' -fuzz '^FuzzSecretKey$' -fuzztime 60s

var envNameRE = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// requireRefusal checks that a refusal is a typed 4xx with a stable code:
// bad input never turns into a 500 or a panic.
func requireRefusal(t *testing.T, err error, codes ...string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("refusal is not a typed error: %v", err)
	}
	if e.Status < 400 || e.Status >= 500 {
		t.Fatalf("refusal has status %d: %v", e.Status, err)
	}
	for _, c := range codes {
		if e.Code == c {
			return
		}
	}
	t.Fatalf("refusal code %q, want one of %v: %v", e.Code, codes, err)
}

// execable reports whether exec could carry s as an argument or env entry.
func execable(s string) bool {
	_, err := syscall.BytePtrFromString(s)
	return err == nil
}

func FuzzSecretKey(f *testing.F) {
	for _, s := range []string{"API_KEY", "_", "A1", "1A", "a", "", "PATH", "ORGPLANE_TOKEN", "ORGPLANE", "HOME_DIR", "K\x00", strings.Repeat("K", 257)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := ValidateSecretKey(key)
		want := envNameRE.MatchString(key) && len(key) <= 256 && !strings.HasPrefix(key, "ORGPLANE_") && !reservedKeys[key]
		if (err == nil) != want {
			t.Fatalf("ValidateSecretKey(%q) = %v, oracle says accepted=%v", key, err, want)
		}
		if err != nil {
			requireRefusal(t, err, "invalid_key", "reserved_key")
			return
		}
		if !execable(key + "=") {
			t.Fatalf("accepted key %q cannot be an env name", key)
		}
	})
}

func FuzzSecretValue(f *testing.F) {
	for _, s := range []string{"", "v", "sk-abc", "a\x00b", "\x00", "multi\nline", "\xff\xfe", "=", strings.Repeat("v", MaxSecretValue), strings.Repeat("v", MaxSecretValue+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		err := ValidateSecretValue(v)
		want := len(v) <= MaxSecretValue && !strings.Contains(v, "\x00")
		if (err == nil) != want {
			t.Fatalf("ValidateSecretValue(%q) = %v, oracle says accepted=%v", v, err, want)
		}
		if err != nil {
			requireRefusal(t, err, "invalid_value", "value_too_large")
			if strings.Contains(err.Error(), v) && len(v) >= 4 {
				t.Fatalf("the refusal repeats the value: %v", err)
			}
			return
		}
		if !execable("K=" + v) {
			t.Fatalf("accepted value %q cannot be in an env", v)
		}
	})
}

// checkBoxRules checks what every accepted process or docker spec
// guarantees about the box it starts.
func checkBoxRules(t *testing.T, command []string, env map[string]string, readyAfter *float64) {
	t.Helper()
	if len(command) > 0 && command[0] == "" {
		t.Fatalf("accepted an empty program name")
	}
	for _, a := range command {
		if !execable(a) || len(a) > MaxSecretValue {
			t.Fatalf("accepted argument %q", a)
		}
	}
	for k, v := range env {
		if ValidateSecretKey(k) != nil || ValidateSecretValue(v) != nil || !execable(k+"="+v) {
			t.Fatalf("accepted env %q=%q", k, v)
		}
	}
	if readyAfter != nil && !(*readyAfter >= 0 && *readyAfter <= maxReadyAfter) {
		t.Fatalf("accepted ready_after_seconds %v", *readyAfter)
	}
}

// fuzzSpec checks normalizeSpec for one runtime: a refusal is a typed 4xx;
// an accepted spec decodes strictly, obeys the box rules, and round-trips
// (normalizing its canonical form gives it back).
func fuzzSpec[T any](t *testing.T, runtime string, raw []byte, check func(*T)) {
	out, err := normalizeSpec(runtime, raw)
	if err != nil {
		requireRefusal(t, err, "invalid_spec", "invalid_value", "value_too_large")
		return
	}
	var sp T
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sp); err != nil {
		t.Fatalf("canonical spec %s does not decode: %v", out, err)
	}
	check(&sp)
	again, err := normalizeSpec(runtime, json.RawMessage(out))
	if err != nil || again != out {
		t.Fatalf("canonical spec does not round-trip: %s -> %s (%v)", out, again, err)
	}
}

func FuzzProcessSpec(f *testing.F) {
	for _, s := range []string{``, `null`, `{}`, `{"command":["/bin/sh","-c","echo hi"]}`, `{"command":[""]}`,
		`{"command":["a\u0000b"]}`, `{"env":{"MODE":"x"}}`, `{"env":{"PATH":"/bin"}}`, `{"env":{"K":"a\u0000"}}`,
		`{"ready_after_seconds":-1}`, `{"ready_after_seconds":0.5}`, `{"ready_after_seconds":1e999}`, `{"image":"x"}`,
		`{"command":"notalist"}`, `[]`, `{"command":["x"]} {}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fuzzSpec(t, RuntimeProcess, raw, func(sp *ProcessSpec) { checkBoxRules(t, sp.Command, sp.Env, sp.ReadyAfterSeconds) })
	})
}

func FuzzDockerSpec(f *testing.F) {
	for _, s := range []string{`{"image":"alpine:3"}`, `{}`, `{"image":""}`, `{"image":" x"}`, `{"image":"x\u0000"}`,
		`{"image":"x","user":"1000:1000"}`, `{"image":"x","user":"root; rm"}`, `{"image":"x","ready_after_seconds":-1}`,
		`{"image":"x","command":["/box","agent"],"env":{"A":"b"}}`, `{"image":"x","env":{"ORGPLANE_URL":"y"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fuzzSpec(t, RuntimeDocker, raw, func(sp *DockerSpec) {
			checkBoxRules(t, sp.Command, sp.Env, sp.ReadyAfterSeconds)
			if sp.Image == "" || !execable(sp.Image) || strings.TrimSpace(sp.Image) != sp.Image {
				t.Fatalf("accepted image %q", sp.Image)
			}
			if sp.User != "" && !dockerUserRE.MatchString(sp.User) {
				t.Fatalf("accepted user %q", sp.User)
			}
		})
	})
}

// TestSealOverhead: the env size cap reads a value's length from its
// stored ciphertext's; that holds only while encryption adds exactly
// sealOverhead bytes.
func TestSealOverhead(t *testing.T) {
	id, key, err := crypto.GenerateDataKey()
	if err != nil {
		t.Fatal(err)
	}
	ring, err := crypto.NewRing(id, map[string][]byte{id: key})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 17, 4096, MaxSecretValue} {
		_, ct, err := ring.Encrypt(make([]byte, n), []byte("aad"))
		if err != nil {
			t.Fatal(err)
		}
		if len(ct)-sealOverhead != n {
			t.Fatalf("a %d-byte value sealed to %d bytes; sealOverhead %d is stale", n, len(ct), sealOverhead)
		}
	}
}
