package provisiontest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/provision"
)

// Backend is what the conformance suite needs to drive one provisioner
// backend.
type Backend struct {
	// New returns a provisioner. A second call stands for the control
	// plane after a restart: a new provisioner over the same boxes. The
	// backend closes what it makes at the test's cleanup.
	New func(t *testing.T) provision.Provisioner
	// Spec returns a spec of workspace ws, generation 1, that runs the test
	// box (package testbox) with args and env. The suite adds the box
	// contract's ids to env, as the service does.
	Spec func(t *testing.T, ws string, env map[string]string, args ...string) provision.Spec
	// Within bounds each wait for the backend (a start, a log line, an
	// exit). Default 30s.
	Within time.Duration
}

// conformanceSecret is planted in a box's env; it must never come out.
const conformanceSecret = "conformance-s3cr3t-6b1f"

// Conformance runs the behaviour every provisioner promises (see package
// provision) against one backend: start, inspect, stop (idempotent), the
// box's exit through Waiter, logs with secret values masked through
// Logger, List through Lister, and Adopt by a new provisioner after a
// control-plane restart. Boxes are stopped at cleanup whatever happens.
func Conformance(t *testing.T, b Backend) {
	if b.Within <= 0 {
		b.Within = 30 * time.Second
	}
	start := func(t *testing.T, p provision.Provisioner, spec provision.Spec) provision.Handle {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), b.Within)
		defer cancel()
		h, err := p.Start(ctx, spec)
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), b.Within)
			defer cancel()
			require.NoError(t, p.Stop(ctx, h))
		})
		return h
	}
	ws := func(t *testing.T) string { return "ws-" + RandomID(t) }
	spec := func(t *testing.T, ws string, env map[string]string, args ...string) provision.Spec {
		if env == nil {
			env = map[string]string{}
		}
		env["ORGPLANE_WORKSPACE_ID"], env["ORGPLANE_GENERATION"] = ws, "1"
		return b.Spec(t, ws, env, args...)
	}

	t.Run("start inspect logs list stop", func(t *testing.T) {
		t.Parallel()
		p := b.New(t)
		spec := spec(t, ws(t), map[string]string{"API_KEY": conformanceSecret}, "-env", "API_KEY,UNSET_ONE", "-leak", "API_KEY", "-lines", "2")
		h := start(t, p, spec)
		require.NotEmpty(t, h.Runtime)
		require.NotEmpty(t, h.ID)
		require.Equal(t, spec.WorkspaceID, h.WorkspaceID)
		require.Equal(t, int64(1), h.Generation)
		require.False(t, h.StartedAt.IsZero())

		ctx := context.Background()
		st, err := p.Inspect(ctx, h)
		require.NoError(t, err)
		require.True(t, st.Running, "inspect right after start: %+v", st)

		if lg, ok := p.(provision.Logger); ok {
			var out string
			require.Eventually(t, func() bool {
				b, err := lg.Logs(ctx, spec.WorkspaceID, 0)
				require.NoError(t, err)
				out = string(b)
				return strings.Contains(out, "ready")
			}, b.Within, 20*time.Millisecond, "the box's log never said ready")
			require.Contains(t, out, "env API_KEY=set\n")
			require.Contains(t, out, "env UNSET_ONE=unset\n")
			require.Contains(t, out, "leak API_KEY=[REDACTED]\n")
			require.NotContains(t, out, conformanceSecret)
			tail, err := lg.Logs(ctx, spec.WorkspaceID, 1)
			require.NoError(t, err)
			require.Equal(t, "ready\n", string(tail), "tail 1 is the last line")
		}
		if l, ok := p.(provision.Lister); ok {
			hs, err := l.List(ctx)
			require.NoError(t, err)
			require.True(t, slices.ContainsFunc(hs, func(x provision.Handle) bool {
				return x.ID == h.ID && x.WorkspaceID == h.WorkspaceID && x.Generation == h.Generation
			}), "List has the box: %+v", hs)
		}

		require.NoError(t, p.Stop(ctx, h))
		st, err = p.Inspect(ctx, h)
		if !errors.Is(err, provision.ErrNotFound) {
			require.NoError(t, err)
			require.False(t, st.Running, "running after Stop")
		}
		require.NoError(t, p.Stop(ctx, h), "Stop is idempotent")
	})

	t.Run("wait reports the exit code", func(t *testing.T) {
		t.Parallel()
		p := b.New(t)
		wt, ok := p.(provision.Waiter)
		if !ok {
			t.Skip("not a Waiter")
		}
		h := start(t, p, spec(t, ws(t), nil, "-exit-after", "300ms", "-exit-code", "3"))
		select {
		case st, ok := <-wt.Wait(context.Background(), h):
			require.True(t, ok, "closed without a state")
			require.False(t, st.Running)
			require.True(t, st.Exited, "%+v", st)
			require.Equal(t, 3, st.ExitCode)
			require.NotEmpty(t, st.Reason)
		case <-time.After(b.Within):
			t.Fatal("no exit state")
		}
	})

	t.Run("wait ends with its context", func(t *testing.T) {
		t.Parallel()
		p := b.New(t)
		wt, ok := p.(provision.Waiter)
		if !ok {
			t.Skip("not a Waiter")
		}
		h := start(t, p, spec(t, ws(t), nil))
		ctx, cancel := context.WithCancel(context.Background())
		ch := wt.Wait(ctx, h)
		cancel()
		select {
		case st, ok := <-ch:
			require.False(t, ok, "a state (%+v) from a box that still runs", st)
		case <-time.After(b.Within):
			t.Fatal("Wait did not end with its context")
		}
	})

	t.Run("adopt after a control-plane restart", func(t *testing.T) {
		t.Parallel()
		p1 := b.New(t)
		spec := spec(t, ws(t), nil)
		h := start(t, p1, spec)
		p2 := b.New(t)
		ctx := context.Background()
		st, err := p2.Adopt(ctx, h)
		require.NoError(t, err)
		require.True(t, st.Running)
		st, err = p2.Inspect(ctx, h)
		require.NoError(t, err)
		require.True(t, st.Running)
		require.NoError(t, p2.Stop(ctx, h))
		if wt, ok := p1.(provision.Waiter); ok {
			select {
			case st := <-wt.Wait(ctx, h):
				require.False(t, st.Running, "the old provisioner sees the box gone")
			case <-time.After(b.Within):
				t.Fatal("the old provisioner never saw the box end")
			}
		}
	})

	t.Run("a box that is not there", func(t *testing.T) {
		t.Parallel()
		p := b.New(t)
		spec := spec(t, ws(t), nil)
		h := start(t, p, spec)
		ctx := context.Background()
		require.NoError(t, p.Stop(ctx, h))
		_, err := p.Adopt(ctx, h)
		require.ErrorIs(t, err, provision.ErrNotFound)
		st, err := p.Inspect(ctx, h)
		if !errors.Is(err, provision.ErrNotFound) {
			require.NoError(t, err)
			require.False(t, st.Running)
		}
		if wt, ok := p.(provision.Waiter); ok {
			select {
			case st, ok := <-wt.Wait(ctx, h):
				require.True(t, ok)
				require.False(t, st.Running)
			case <-time.After(b.Within):
				t.Fatal("Wait on a gone box did not answer at once")
			}
		}
	})
}
