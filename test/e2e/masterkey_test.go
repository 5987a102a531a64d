package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// TestServeRefusesABadMasterKey: the server refuses to start when the
// master key is missing, malformed or does not open the store, and says
// which; there is no plaintext fallback. Flags win over the environment.
func TestServeRefusesABadMasterKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "orgplane.db")
	good, err := crypto.GenerateMasterKey()
	require.NoError(t, err)
	wrong, err := crypto.GenerateMasterKey()
	require.NoError(t, err)
	goodEnv := "ORGPLANE_MASTER_KEY=" + crypto.EncodeMasterKey(good)
	// Initialise the store's key check value with the good key.
	_, stderr, code := e2etest.CLI(t, dir, []string{goodEnv}, "keys", "rotate", "--db", db, "--settle", "1ms")
	require.Equal(t, 0, code, stderr)

	wrongFile := filepath.Join(dir, "wrong.key")
	require.NoError(t, crypto.WriteMasterKeyFile(wrongFile, wrong))
	looseFile := filepath.Join(dir, "loose.key")
	require.NoError(t, os.WriteFile(looseFile, []byte(crypto.EncodeMasterKey(good)), 0o644))

	addr := e2etest.FreeAddr(t)
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"missing", []string{"ORGPLANE_MASTER_KEY="}, nil, "no master key"},
		{"not base64", []string{"ORGPLANE_MASTER_KEY=not-base64!"}, nil, "ORGPLANE_MASTER_KEY"},
		{"wrong length", []string{"ORGPLANE_MASTER_KEY=" + crypto.EncodeMasterKey(good[:16])}, nil, "ORGPLANE_MASTER_KEY"},
		{"wrong key", []string{"ORGPLANE_MASTER_KEY=" + crypto.EncodeMasterKey(wrong)}, nil, "does not open this store"},
		{"flag wins over env", []string{goodEnv}, []string{"--master-key-file", wrongFile}, "does not open this store"},
		{"key file readable by others", nil, []string{"--master-key-file", looseFile}, "mode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--db", db, "--addr", addr, "--docker", "off"}, tc.args...)
			stdout, stderr, code := e2etest.CLI(t, dir, append([]string{"ORGPLANE_MASTER_KEY_FILE="}, tc.env...), args...)
			require.NotEqual(t, 0, code, "serve started with a bad key: %s", stdout)
			require.Contains(t, stderr, tc.want)
			require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one clear line: %q", stderr)
			require.NotContains(t, stderr, crypto.EncodeMasterKey(good))
			require.NotContains(t, stderr, crypto.EncodeMasterKey(wrong))
		})
	}
}

// TestUpRefusesAMissingKeyBesideADatabase: `up` generates a master key only
// for a new data dir. When master.key is gone but the database is there, it
// says the key is missing and writes nothing (a fresh key would only fail
// later with "does not open this store", and hide what was lost).
func TestUpRefusesAMissingKeyBesideADatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := crypto.GenerateMasterKey()
	require.NoError(t, err)
	db := filepath.Join(dir, "orgplane.db")
	_, stderr, code := e2etest.CLI(t, dir, []string{"ORGPLANE_MASTER_KEY=" + crypto.EncodeMasterKey(key)},
		"keys", "rotate", "--db", "sqlite:"+db, "--settle", "1ms")
	require.Equal(t, 0, code, stderr)
	before, err := os.ReadDir(dir)
	require.NoError(t, err)

	stdout, stderr, code := e2etest.CLI(t, dir, []string{"ORGPLANE_MASTER_KEY=", "ORGPLANE_MASTER_KEY_FILE="},
		"up", "--data-dir", dir, "--addr", e2etest.FreeAddr(t), "--docker", "off")
	require.NotEqual(t, 0, code, "up started without its key: %s", stdout)
	require.Contains(t, stderr, "master.key is missing")
	require.Contains(t, stderr, "restore the key file")
	require.NotContains(t, stderr, "does not open this store")
	_, err = os.Stat(filepath.Join(dir, "master.key"))
	require.ErrorIs(t, err, os.ErrNotExist, "no key was written")
	after, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Equal(t, len(before), len(after), "nothing was written to the data dir")
}
