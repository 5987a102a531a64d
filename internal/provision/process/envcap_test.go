package process_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/process"
)

// TestEnvCapFitsUnderTheKernelLimit: a box whose env fills the default cap
// (core.DefaultMaxBoxEnvBytes, as exec counts it) starts; the env that
// made every restart fail before the cap (45 secrets of 60 KB) is refused
// by the kernel, which is what the cap keeps writes from reaching.
func TestEnvCapFitsUnderTheKernelLimit(t *testing.T) {
	t.Parallel()
	p, err := process.New(process.Config{LogDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	fill := func(total int) map[string]string {
		env := map[string]string{}
		for i := 0; total > 0; i++ {
			k := fmt.Sprintf("K%03d", i)
			n := min(60_000, total-len(k)-2-8)
			if n <= 0 {
				break
			}
			env[k] = strings.Repeat("v", n)
			total -= len(k) + 2 + 8 + n
		}
		return env
	}
	start := func(env map[string]string) (provision.Handle, error) {
		return p.Start(context.Background(), provision.Spec{OrgID: "o", WorkspaceID: "ws-cap", Generation: int64(len(env)),
			Command: []string{"/bin/sh", "-c", "echo started; exec sleep 1000"}, Env: env})
	}

	h, err := start(fill(core.DefaultMaxBoxEnvBytes))
	require.NoError(t, err, "an env at the cap starts")
	waitLog(t, p, "ws-cap", "started")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Stop(ctx, h))

	_, err = start(fill(45 * 60_000))
	require.Error(t, err)
	require.Contains(t, err.Error(), "argument list too long")
}
