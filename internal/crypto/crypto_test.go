package crypto_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orgplane/orgplane/internal/crypto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newKey(t testing.TB) []byte {
	t.Helper()
	k, err := crypto.GenerateMasterKey()
	require.NoError(t, err)
	require.Len(t, k, crypto.KeySize)
	return k
}

func newRing(t testing.TB) *crypto.Ring {
	t.Helper()
	r, err := crypto.NewRing("k1", map[string][]byte{"k1": newKey(t)})
	require.NoError(t, err)
	return r
}

// requireNoLeak checks that an error text does not carry any of the secret
// byte strings, raw or in the encodings a careless %v/%x/%q would produce.
func requireNoLeak(t *testing.T, err error, secrets ...[]byte) {
	t.Helper()
	require.Error(t, err)
	msg := err.Error()
	for _, s := range secrets {
		for _, form := range []string{string(s), fmt.Sprintf("%x", s), fmt.Sprintf("%v", s), base64.StdEncoding.EncodeToString(s)} {
			require.NotContains(t, msg, form)
		}
	}
}

func TestRingRoundTrip(t *testing.T) {
	t.Parallel()
	r := newRing(t)
	for _, pt := range [][]byte{nil, []byte(""), []byte("s3cr3t"), bytes.Repeat([]byte{0xff}, 64<<10)} {
		aad := crypto.AAD("org1", "workspace", "ws1", "API_KEY")
		id, ct, err := r.Encrypt(pt, aad)
		require.NoError(t, err)
		require.Equal(t, "k1", id)
		require.Len(t, ct, crypto.NonceSize+len(pt)+16)
		got, err := r.Decrypt(id, ct, aad)
		require.NoError(t, err)
		require.True(t, bytes.Equal(pt, got))
	}
}

func TestRingTampered(t *testing.T) {
	t.Parallel()
	r := newRing(t)
	plaintext := []byte("hunter2-plaintext")
	aad := crypto.AAD("org1", "global", "", "DB_PASSWORD")
	id, ct, err := r.Encrypt(plaintext, aad)
	require.NoError(t, err)

	// Flip one bit anywhere (nonce, body, tag): every position must fail.
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		_, err := r.Decrypt(id, bad, aad)
		require.ErrorIs(t, err, crypto.ErrDecrypt, "byte %d", i)
		requireNoLeak(t, err, plaintext)
	}
	for _, bad := range [][]byte{nil, ct[:crypto.NonceSize], ct[:len(ct)-1], append(bytes.Clone(ct), 0)} {
		_, err := r.Decrypt(id, bad, aad)
		require.ErrorIs(t, err, crypto.ErrDecrypt)
	}
}

func TestRingSwappedRows(t *testing.T) {
	t.Parallel()
	r := newRing(t)
	rowA := crypto.AAD("org1", "workspace", "ws1", "TOKEN")
	id, ct, err := r.Encrypt([]byte("value-of-ws1"), rowA)
	require.NoError(t, err)

	others := map[string][]byte{
		"other org":       crypto.AAD("org2", "workspace", "ws1", "TOKEN"),
		"other scope":     crypto.AAD("org1", "global", "ws1", "TOKEN"),
		"other workspace": crypto.AAD("org1", "workspace", "ws2", "TOKEN"),
		"other key":       crypto.AAD("org1", "workspace", "ws1", "TOKEN2"),
		"no aad":          nil,
	}
	for name, aad := range others {
		_, err := r.Decrypt(id, ct, aad)
		require.ErrorIs(t, err, crypto.ErrDecrypt, name)
	}
}

func TestAADUnambiguous(t *testing.T) {
	t.Parallel()
	// Shifting bytes between neighbouring fields must change the encoding.
	cases := [][4]string{
		{"org1", "workspace", "ws1", "KEY"},
		{"org1w", "orkspace", "ws1", "KEY"},
		{"org1", "workspacews1", "", "KEY"},
		{"org1", "workspace", "ws1K", "EY"},
		{"org1", "workspace", "", "ws1KEY"},
		{"", "", "", ""},
		{"", "", "", "\x00"},
	}
	seen := map[string][4]string{}
	for _, c := range cases {
		enc := string(crypto.AAD(c[0], c[1], c[2], c[3]))
		prev, dup := seen[enc]
		require.False(t, dup, "%q and %q encode alike", c, prev)
		seen[enc] = c
	}
	require.Equal(t, crypto.AAD("a", "b", "c", "d"), crypto.AAD("a", "b", "c", "d"))
}

func TestRingNonceUniqueness(t *testing.T) {
	t.Parallel()
	r := newRing(t)
	aad := crypto.AAD("o", "global", "", "K")
	seen := map[string]bool{}
	for range 1000 {
		_, ct, err := r.Encrypt([]byte("same plaintext"), aad)
		require.NoError(t, err)
		nonce := string(ct[:crypto.NonceSize])
		require.False(t, seen[nonce], "nonce reused")
		seen[nonce] = true
	}
	_, a, err := r.Encrypt([]byte("x"), aad)
	require.NoError(t, err)
	_, b, err := r.Encrypt([]byte("x"), aad)
	require.NoError(t, err)
	require.NotEqual(t, a, b)
}

func TestRingUnknownKey(t *testing.T) {
	t.Parallel()
	k1, k2 := newKey(t), newKey(t)
	old, err := crypto.NewRing("k1", map[string][]byte{"k1": k1})
	require.NoError(t, err)
	aad := crypto.AAD("o", "global", "", "K")
	id, ct, err := old.Encrypt([]byte("v"), aad)
	require.NoError(t, err)

	// After rotation that keeps k1, old ciphertexts still open and new ones
	// use k2.
	rotated, err := crypto.NewRing("k2", map[string][]byte{"k1": k1, "k2": k2})
	require.NoError(t, err)
	got, err := rotated.Decrypt(id, ct, aad)
	require.NoError(t, err)
	require.Equal(t, []byte("v"), got)
	id2, _, err := rotated.Encrypt([]byte("v"), aad)
	require.NoError(t, err)
	require.Equal(t, "k2", id2)
	require.True(t, rotated.Has("k1"))

	// Once k1 is retired its ciphertexts report ErrUnknownKey, not
	// tampering.
	retired, err := crypto.NewRing("k2", map[string][]byte{"k2": k2})
	require.NoError(t, err)
	_, err = retired.Decrypt(id, ct, aad)
	require.ErrorIs(t, err, crypto.ErrUnknownKey)
	require.False(t, retired.Has("k1"))

	// A ciphertext relabelled with another key id fails authentication.
	_, err = rotated.Decrypt("k2", ct, aad)
	require.ErrorIs(t, err, crypto.ErrDecrypt)
}

func TestNewRingValidation(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	_, err := crypto.NewRing("k9", map[string][]byte{"k1": k})
	require.ErrorIs(t, err, crypto.ErrUnknownKey)
	_, err = crypto.NewRing("k1", map[string][]byte{"k1": k[:16]})
	require.ErrorContains(t, err, "16 bytes, want 32")
	requireNoLeak(t, err, k[:16])
	_, err = crypto.NewRing("k1", map[string][]byte{"k1": k, "": k})
	require.ErrorContains(t, err, "empty key id")
}

func TestWrapUnwrap(t *testing.T) {
	t.Parallel()
	master := newKey(t)
	id, dataKey, err := crypto.GenerateDataKey()
	require.NoError(t, err)
	require.NotEmpty(t, id)

	wrapped, err := crypto.WrapKey(master, id, dataKey)
	require.NoError(t, err)
	require.NotContains(t, string(wrapped), string(dataKey))

	got, err := crypto.UnwrapKey(master, id, wrapped)
	require.NoError(t, err)
	require.Equal(t, dataKey, got)

	// Wrong master key.
	_, err = crypto.UnwrapKey(newKey(t), id, wrapped)
	require.ErrorIs(t, err, crypto.ErrDecrypt)
	requireNoLeak(t, err, master, dataKey)

	// The id is authenticated: a wrapped key cannot be relabelled.
	_, err = crypto.UnwrapKey(master, id+"x", wrapped)
	require.ErrorIs(t, err, crypto.ErrDecrypt)

	// A check value is not a wrapped key, even under the same master key.
	cv, err := crypto.NewCheckValue(master)
	require.NoError(t, err)
	_, err = crypto.UnwrapKey(master, id, cv)
	require.ErrorIs(t, err, crypto.ErrDecrypt)

	_, err = crypto.WrapKey(master, id, dataKey[:31])
	require.ErrorContains(t, err, "31 bytes")
	_, err = crypto.WrapKey(master[:31], id, dataKey)
	require.ErrorContains(t, err, "31 bytes")
	requireNoLeak(t, err, master[:31], dataKey)
}

func TestCheckValue(t *testing.T) {
	t.Parallel()
	master := newKey(t)
	cv, err := crypto.NewCheckValue(master)
	require.NoError(t, err)
	require.NoError(t, crypto.VerifyCheckValue(master, cv))

	err = crypto.VerifyCheckValue(newKey(t), cv)
	require.ErrorIs(t, err, crypto.ErrWrongMasterKey)
	require.ErrorContains(t, err, "master key does not open this store")
	requireNoLeak(t, err, master)

	bad := bytes.Clone(cv)
	bad[len(bad)-1] ^= 1
	require.ErrorIs(t, crypto.VerifyCheckValue(master, bad), crypto.ErrWrongMasterKey)
	require.ErrorIs(t, crypto.VerifyCheckValue(master, nil), crypto.ErrWrongMasterKey)

	// A wrapped data key is not a check value.
	_, dk, err := crypto.GenerateDataKey()
	require.NoError(t, err)
	wrapped, err := crypto.WrapKey(master, "k1", dk)
	require.NoError(t, err)
	require.ErrorIs(t, crypto.VerifyCheckValue(master, wrapped), crypto.ErrWrongMasterKey)
}

func TestParseMasterKey(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	enc := crypto.EncodeMasterKey(key)

	got, err := crypto.ParseMasterKey(enc)
	require.NoError(t, err)
	require.Equal(t, key, got)
	got, err = crypto.ParseMasterKey(" " + enc + "\n")
	require.NoError(t, err)
	require.Equal(t, key, got)

	_, err = crypto.ParseMasterKey("not*base64!")
	require.ErrorContains(t, err, "not base64")
	require.NotContains(t, err.Error(), "not*base64!")

	_, err = crypto.ParseMasterKey(base64.StdEncoding.EncodeToString(key[:16]))
	require.ErrorContains(t, err, "decodes to 16 bytes, want 32")
	_, err = crypto.ParseMasterKey("")
	require.ErrorContains(t, err, "decodes to 0 bytes, want 32")
	_, err = crypto.ParseMasterKey(base64.StdEncoding.EncodeToString(append(key, 1)))
	require.ErrorContains(t, err, "decodes to 33 bytes, want 32")
	requireNoLeak(t, err, key)
}

func TestMasterKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	key := newKey(t)

	require.NoError(t, crypto.WriteMasterKeyFile(path, key))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(string(raw), "\n"))

	got, err := crypto.LoadMasterKeyFile(path)
	require.NoError(t, err)
	require.Equal(t, key, got)

	// Never overwrite an existing key: that would orphan every secret.
	err = crypto.WriteMasterKeyFile(path, newKey(t))
	require.ErrorIs(t, err, os.ErrExist)
	got, err = crypto.LoadMasterKeyFile(path)
	require.NoError(t, err)
	require.Equal(t, key, got)

	require.Error(t, crypto.WriteMasterKeyFile(filepath.Join(dir, "short.key"), key[:8]))
	require.NoFileExists(t, filepath.Join(dir, "short.key"))

	_, err = crypto.LoadMasterKeyFile(filepath.Join(dir, "missing.key"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestLoadMasterKeyFileRefusesOpenModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newKey(t)
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o604, false},
		{0o644, false},
		{0o660, false},
		{0o610, false},
	} {
		path := filepath.Join(dir, fmt.Sprintf("key-%o", tc.mode))
		require.NoError(t, os.WriteFile(path, []byte(crypto.EncodeMasterKey(key)+"\n"), 0o600))
		require.NoError(t, os.Chmod(path, tc.mode))
		got, err := crypto.LoadMasterKeyFile(path)
		if tc.ok {
			require.NoError(t, err, "mode %o", tc.mode)
			require.Equal(t, key, got)
			continue
		}
		require.ErrorContains(t, err, fmt.Sprintf("mode %#o", tc.mode))
		requireNoLeak(t, err, key)
	}
}

func TestLoadMasterKeyFileBadContent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty":     "",
		"short":     base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"not b64":   "this is not a key at all\n",
		"oversized": strings.Repeat("A", 10000),
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		_, err := crypto.LoadMasterKeyFile(path)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), path, name)
	}
	_, err := crypto.LoadMasterKeyFile(dir)
	require.ErrorContains(t, err, "not a regular file")
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	master := newKey(t)
	fpKey := crypto.FingerprintKey(master)
	require.Len(t, fpKey, 32)
	require.Equal(t, fpKey, crypto.FingerprintKey(master), "derivation is deterministic")
	require.NotEqual(t, master, fpKey)

	env := map[string]string{}
	for i := range 50 {
		env[fmt.Sprintf("KEY_%d", i)] = fmt.Sprintf("value-%d", i)
	}
	fp := crypto.Fingerprint(fpKey, env)
	require.Len(t, fp, 64)
	// Map iteration order is random; repeat to make a dependence on it show.
	for range 20 {
		require.Equal(t, fp, crypto.Fingerprint(fpKey, env))
	}

	// Sensitivity: moving bytes between key and value, or between pairs.
	pairs := []map[string]string{
		{"A": "bc"},
		{"AB": "c"},
		{"ABc": ""},
		{"A": "b", "C": ""},
		{"A": "", "BC": ""},
		{"A": "bc", "D": "e"},
		{},
	}
	seen := map[string]int{}
	for i, p := range pairs {
		f := crypto.Fingerprint(fpKey, p)
		j, dup := seen[f]
		require.False(t, dup, "%v and %v share a fingerprint", p, pairs[j])
		seen[f] = i
	}

	// Empty and nil env are the same, well-defined value.
	require.Equal(t, crypto.Fingerprint(fpKey, nil), crypto.Fingerprint(fpKey, map[string]string{}))
	require.Len(t, crypto.Fingerprint(fpKey, nil), 64)

	// The fingerprint depends on the master key.
	require.NotEqual(t, fp, crypto.Fingerprint(crypto.FingerprintKey(newKey(t)), env))

	// One changed value changes it.
	env["KEY_7"] = "value-7!"
	require.NotEqual(t, fp, crypto.Fingerprint(fpKey, env))
}

func TestFingerprintKnownAnswer(t *testing.T) {
	t.Parallel()
	// Pinned so a change of encoding or derivation (which would mark every
	// box in every deployment stale) cannot slip in unnoticed.
	fpKey := crypto.FingerprintKey(make([]byte, 32))
	require.Equal(t, fingerprintKAT[0], crypto.Fingerprint(fpKey, nil))
	require.Equal(t, fingerprintKAT[1], crypto.Fingerprint(fpKey, map[string]string{"A": "bc", "B": ""}))
}

func BenchmarkEncrypt1KiB(b *testing.B) {
	r := newRing(b)
	pt := bytes.Repeat([]byte("x"), 1024)
	aad := crypto.AAD("org1", "workspace", "ws1", "API_KEY")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.Encrypt(pt, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt1KiB(b *testing.B) {
	r := newRing(b)
	pt := bytes.Repeat([]byte("x"), 1024)
	aad := crypto.AAD("org1", "workspace", "ws1", "API_KEY")
	id, ct, err := r.Encrypt(pt, aad)
	require.NoError(b, err)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Decrypt(id, ct, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFingerprint200(b *testing.B) {
	fpKey := crypto.FingerprintKey(newKey(b))
	env := make(map[string]string, 200)
	for i := range 200 {
		env[fmt.Sprintf("SECRET_KEY_%03d", i)] = strings.Repeat("v", 40)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = crypto.Fingerprint(fpKey, env)
	}
}

// fingerprintKAT was computed outside Go (Python hmac/hashlib, HKDF written
// out by hand) from the documented encoding: zero master key; nil env, then
// {"A": "bc", "B": ""}.
var fingerprintKAT = [2]string{
	"e01b61223a409fac31cc5a6ff6e0a8b17d67878841e6a357b6855bd55514cac2",
	"a899fb473ea628628b81b89e3689331b8c08694085312d3d2ac587073297d624",
}
