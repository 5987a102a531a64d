package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/testenv"
)

// keys rotate shows how many secrets it re-encrypted so far, on stderr:
// plain lines when stderr is not a terminal; stdout holds the result.
func TestKeysRotateShowsProgress(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	for i := range 3 {
		_, err := e.Admin.SetSecret(context.Background(), "", fmt.Sprintf("KEY_%d", i), "v", false)
		require.NoError(t, err)
	}
	t.Setenv("ORGPLANE_MASTER_KEY", crypto.EncodeMasterKey(e.MasterKey))
	t.Setenv("ORGPLANE_MASTER_KEY_FILE", "")
	r := runCLI(t, "", "keys", "rotate", "--db", e.DBURL, "--batch", "1", "--settle", "1ms")
	require.Equal(t, 0, r.code, r.stderr)
	require.NotContains(t, r.stderr, "\r")
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	require.Equal(t, []string{
		"rotating: 0 secrets re-encrypted so far",
		"rotating: 1 secrets re-encrypted so far",
		"rotating: 2 secrets re-encrypted so far",
		"rotating: 3 secrets re-encrypted so far",
		"rotated: 3 secrets re-encrypted",
	}, lines)
	require.Contains(t, r.stdout, "3 secrets re-encrypted")
}
