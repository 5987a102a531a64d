package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/store"
)

// TestProbeWriteFullDisk fills the file system under a real SQLite store:
// reads (Ping) keep answering, writes fail, and the write probe says so.
// It needs root to mount a tiny tmpfs.
func TestProbeWriteFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tiny tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { require.NoError(t, syscall.Unmount(dir, syscall.MNT_DETACH)) })
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "orgplane.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.ProbeWrite(ctx, time.Now()))

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	require.NoError(t, err)
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			break
		}
	}
	// Fill the last partial block too.
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
	require.NoError(t, f.Close())

	require.NoError(t, s.Ping(ctx), "reads still answer on a full disk: that is why ping alone is not readiness")
	err = s.ProbeWrite(ctx, time.Now())
	require.Error(t, err)
	require.True(t, errors.Is(err, store.ErrUnavailable), "a full disk is the store being unavailable: %v", err)

	require.NoError(t, os.Remove(filler))
	require.NoError(t, s.ProbeWrite(ctx, time.Now()), "writable again once space is freed")
}
