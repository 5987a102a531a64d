package core

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/orgplane/orgplane/internal/provision/kubernetes/kubespec"
	"github.com/orgplane/orgplane/internal/store"
)

// Runtimes a workspace may name.
const (
	RuntimeProcess    = "process"
	RuntimeDocker     = "docker"
	RuntimeKubernetes = "kubernetes"
	RuntimeExternal   = "external"
)

// ProcessSpec is the spec of a process workspace.
type ProcessSpec struct {
	Command           []string          `json:"command,omitempty"`
	Env               map[string]string `json:"env,omitempty"`
	ReadyAfterSeconds *float64          `json:"ready_after_seconds,omitempty"`
}

// DockerSpec is the spec of a docker workspace.
type DockerSpec struct {
	Image   string            `json:"image"`
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// User runs the container as "uid[:gid]" or "name[:group]"; empty: the
	// provisioner's default, an unprivileged user (never the image's root).
	User              string   `json:"user,omitempty"`
	ReadyAfterSeconds *float64 `json:"ready_after_seconds,omitempty"`
}

// ExternalSpec is the (empty) spec of an external workspace.
type ExternalSpec struct{}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func validName(what, name string) error {
	if !nameRE.MatchString(name) {
		return Invalid("invalid_name", "%s %q must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", what, name)
	}
	return nil
}

// normalizeSpec checks spec against its runtime and returns its canonical
// JSON. Unknown fields are refused, not ignored: a typo must not silently
// become a default.
func normalizeSpec(runtime string, spec json.RawMessage) (string, error) {
	if len(bytes.TrimSpace(spec)) == 0 || bytes.Equal(bytes.TrimSpace(spec), []byte("null")) {
		spec = json.RawMessage("{}")
	}
	var v any
	switch runtime {
	case RuntimeProcess:
		v = &ProcessSpec{}
	case RuntimeDocker:
		v = &DockerSpec{}
	case RuntimeExternal:
		v = &ExternalSpec{}
	case RuntimeKubernetes:
		v = &kubespec.Spec{}
	default:
		return "", Invalid("invalid_runtime", "runtime must be one of process, docker, kubernetes, external; got %q", runtime)
	}
	if err := exactSpecKeys(runtime, spec, v); err != nil {
		return "", err
	}
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return "", Invalid("invalid_spec", "spec for runtime %s: %s", runtime, specErr(err))
	}
	switch sp := v.(type) {
	case *ProcessSpec:
		if err := checkBoxSpec(sp.Command, sp.Env, sp.ReadyAfterSeconds); err != nil {
			return "", err
		}
	case *DockerSpec:
		if sp.Image == "" {
			return "", Invalid("invalid_spec", "spec.image is required for runtime docker")
		}
		if strings.IndexByte(sp.Image, 0) >= 0 || strings.TrimSpace(sp.Image) != sp.Image || len(sp.Image) > 1024 {
			return "", Invalid("invalid_spec", "spec.image must be an image reference (no NUL, no surrounding spaces, at most 1024 bytes)")
		}
		if sp.User != "" && !dockerUserRE.MatchString(sp.User) {
			return "", Invalid("invalid_spec", "spec.user must be uid[:gid] or name[:group]")
		}
		if err := checkBoxSpec(sp.Command, sp.Env, sp.ReadyAfterSeconds); err != nil {
			return "", err
		}
	case *kubespec.Spec:
		if err := checkKubeSpec(spec, sp); err != nil {
			return "", err
		}
	}
	out, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode spec: %w", err)
	}
	return string(out), nil
}

var dockerUserRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$`)

// maxReadyAfter bounds ready_after_seconds whatever the provision timeout.
const maxReadyAfter = 3600

// checkBoxSpec holds the rules the process and docker specs share: what a
// box can be started with. A NUL cannot be in an argument or an env value
// (exec would cut it, or refuse it), so it is refused here rather than
// failing every start of the box.
func checkBoxSpec(command []string, env map[string]string, readyAfter *float64) error {
	if len(command) > 0 && command[0] == "" {
		return Invalid("invalid_spec", "spec.command[0] must name a program")
	}
	for i, a := range command {
		if strings.IndexByte(a, 0) >= 0 {
			return Invalid("invalid_value", "spec.command[%d] contains a NUL byte, which no program argument can hold", i)
		}
		if len(a) > MaxSecretValue {
			return Invalid("value_too_large", "spec.command[%d] is %d bytes; at most %d", i, len(a), MaxSecretValue)
		}
	}
	for k, v := range env {
		if err := ValidateSecretKey(k); err != nil {
			return Invalid("invalid_spec", "spec.env: %s", err.Error())
		}
		if err := validateValue("spec.env."+k, v); err != nil {
			return err
		}
	}
	if readyAfter != nil && !(*readyAfter >= 0 && *readyAfter <= maxReadyAfter) { // NaN too
		return Invalid("invalid_spec", "spec.ready_after_seconds must be between 0 and %d", maxReadyAfter)
	}
	return nil
}

// checkSpec is normalizeSpec plus the rules that depend on this control
// plane and the org: the runtime must be enabled here (when creating), a
// box must be able to become healthy before the provision timeout, and its
// env and command must fit the exec cap. wsID is "" for a workspace being
// created. It returns the canonical spec.
func (s *Service) checkSpec(ctx context.Context, tx store.Store, orgID, wsID, runtime string, raw json.RawMessage, creating bool) (string, error) {
	if creating && runtime == RuntimeKubernetes && s.provs[runtime] == nil {
		return "", kubeUnavailable() // before the spec: there is no point fixing it here
	}
	spec, err := normalizeSpec(runtime, raw)
	if err != nil {
		return "", err
	}
	if runtime == RuntimeExternal {
		return spec, nil
	}
	if runtime == RuntimeKubernetes && s.cfg.KubeAgentImage == "" {
		var img struct{ Image string }
		_ = json.Unmarshal([]byte(spec), &img)
		if img.Image == "" {
			return "", Invalid("invalid_spec", "spec.image is required for runtime kubernetes: this control plane has no default agent image (--kube-agent-image)")
		}
	}
	if creating && s.provs[runtime] == nil {
		return "", Refused("runtime_unavailable", "runtime %q is not enabled on this control plane", runtime)
	}
	var ra struct {
		ReadyAfterSeconds *float64 `json:"ready_after_seconds"`
	}
	_ = json.Unmarshal([]byte(spec), &ra)
	if ra.ReadyAfterSeconds != nil && time.Duration(*ra.ReadyAfterSeconds*float64(time.Second)) >= s.cfg.ProvisionTimeout {
		return "", Invalid("invalid_spec", "spec.ready_after_seconds (%gs) must be below the provision timeout (%s): a box is healthy only after it, and failed at the timeout",
			*ra.ReadyAfterSeconds, s.cfg.ProvisionTimeout)
	}
	// Take turns with the org's secret writes (Postgres; SQLite has one
	// writer): a spec and a secret checked concurrently could each fit the
	// cap and together not.
	if err := tx.LockOrg(ctx, orgID); err != nil {
		return "", err
	}
	z, err := s.loadEnvSizes(ctx, tx, orgID)
	if err != nil {
		return "", err
	}
	id := wsID
	if id == "" {
		id = "(new workspace)"
	}
	if err := s.checkEnvSizes(z, []store.Workspace{{ID: id, Runtime: runtime, Spec: spec}}); err != nil {
		return "", err
	}
	return spec, nil
}

func specErr(err error) string {
	var te *json.UnmarshalTypeError
	if ok := asType(err, &te); ok {
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type.String())
	}
	return err.Error()
}

func asType[T any](err error, target *T) bool {
	t, ok := err.(T)
	if ok {
		*target = t
	}
	return ok
}

// exactSpecKeys refuses a spec whose field names match the spec's only
// case-insensitively (encoding/json would accept "Command" for
// "command"), or that repeats one: the API matches names exactly, as for
// request bodies.
func exactSpecKeys(runtime string, spec json.RawMessage, v any) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(spec, &fields); err != nil {
		return nil // not an object: the decoder says what is wrong
	}
	known := map[string]bool{}
	t := reflect.TypeOf(v).Elem()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			known[name] = true
		}
	}
	seen := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(spec))
	if _, err := dec.Token(); err != nil {
		return nil
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		if seen[key] {
			return Invalid("invalid_spec", "spec for runtime %s: field %q appears twice", runtime, key)
		}
		seen[key] = true
		if !known[key] {
			for k := range known {
				if strings.EqualFold(k, key) {
					return Invalid("invalid_spec", "spec for runtime %s: unknown field %q (did you mean %q? names are matched exactly)", runtime, key, k)
				}
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}
