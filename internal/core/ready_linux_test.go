package core_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// TestReadyzFailsOnAFullDisk: /readyz is 503 while the store answers reads
// but cannot write (a full disk), and 200 again once it can. The store is a
// real SQLite file on a tiny tmpfs (root only, as in CI).
func TestReadyzFailsOnAFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tiny tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	// Registered first, so it runs after the Env (and its store) closed.
	t.Cleanup(func() { require.NoError(t, syscall.Unmount(dir, syscall.MNT_DETACH)) })
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime(), DBURL: "sqlite:" + filepath.Join(dir, "orgplane.db")})
	anon := client.New(e.URL, "")
	ctx := context.Background()
	readyz := func() int {
		err := anon.Do(ctx, http.MethodGet, "/readyz", nil, nil)
		var ce *client.Error
		if errors.As(err, &ce) {
			require.Equal(t, "store_unavailable", ce.Code)
			return ce.Status
		}
		require.NoError(t, err)
		return http.StatusOK
	}
	require.Equal(t, http.StatusOK, readyz())

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	require.NoError(t, err)
	chunk := make([]byte, 64<<10)
	for n := len(chunk); n >= 512; {
		if _, err := f.Write(chunk[:n]); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			n /= 2
		}
	}
	require.NoError(t, f.Close())
	require.Equal(t, http.StatusServiceUnavailable, readyz(), "every write fails: not ready")
	require.Equal(t, http.StatusOK, func() int {
		require.NoError(t, anon.Do(ctx, http.MethodGet, "/healthz", nil, nil))
		return http.StatusOK
	}(), "still serving")

	require.NoError(t, os.Remove(filler))
	require.Equal(t, http.StatusOK, readyz(), "ready again once writes succeed")
}
