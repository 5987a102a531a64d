package fake_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/fake"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func receive(t *testing.T, ch <-chan provision.State) provision.State {
	t.Helper()
	select {
	case st, ok := <-ch:
		require.True(t, ok, "closed without a state")
		return st
	case <-time.After(5 * time.Second):
		t.Fatal("no state")
		return provision.State{}
	}
}

func TestRecordsStartsAndStops(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := fake.New(fake.WithRuntime(provision.RuntimeProcess))
	env := map[string]string{"K": "v"}
	h, err := p.Start(ctx, provision.Spec{WorkspaceID: "ws1", Generation: 3, Command: []string{"agent"}, Env: env})
	require.NoError(t, err)
	env["K"] = "changed later" // the record is a copy
	require.Equal(t, provision.RuntimeProcess, h.Runtime)
	require.Equal(t, "ws1", h.WorkspaceID)
	require.Equal(t, int64(3), h.Generation)

	starts := p.Starts()
	require.Len(t, starts, 1)
	require.Equal(t, "v", starts[0].Env["K"])
	running, ok := p.Running("ws1")
	require.True(t, ok)
	require.Equal(t, h, running)
	st, err := p.Inspect(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Running)

	w := p.Wait(ctx, h)
	require.NoError(t, p.Stop(ctx, h))
	require.NoError(t, p.Stop(ctx, h), "idempotent")
	require.Equal(t, []provision.Handle{h, h}, p.Stops())
	require.False(t, receive(t, w).Running)
	_, err = p.Inspect(ctx, h)
	require.ErrorIs(t, err, provision.ErrNotFound)
	_, ok = p.Running("ws1")
	require.False(t, ok)

	ops := []string{}
	for _, c := range p.Calls() {
		ops = append(ops, c.Op)
	}
	require.Equal(t, []string{"start", "inspect", "wait", "stop", "stop", "inspect"}, ops)
}

func TestFailNextStartAndStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := fake.New()
	boom := errors.New("no capacity")
	p.FailNextStart(boom)
	_, err := p.Start(ctx, provision.Spec{WorkspaceID: "ws1"})
	require.ErrorIs(t, err, boom)
	h, err := p.Start(ctx, provision.Spec{WorkspaceID: "ws1"})
	require.NoError(t, err, "only the next Start fails")
	require.Len(t, p.Starts(), 2)
	require.ErrorIs(t, p.Calls()[0].Err, boom)

	p.FailNextStop(boom)
	require.ErrorIs(t, p.Stop(ctx, h), boom)
	st, err := p.Inspect(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Running, "a failed Stop leaves the box running")
	require.NoError(t, p.Stop(ctx, h))
}

func TestExitAndVanish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := fake.New()
	h1, _ := p.Start(ctx, provision.Spec{WorkspaceID: "ws1"})
	h2, _ := p.Start(ctx, provision.Spec{WorkspaceID: "ws2"})

	w := p.Wait(ctx, h1)
	require.NoError(t, p.Exit(h1, 3))
	want := provision.State{Exited: true, ExitCode: 3, Reason: "exited with code 3"}
	require.Equal(t, want, receive(t, w))
	st, err := p.Inspect(ctx, h1)
	require.NoError(t, err)
	require.Equal(t, want, st)
	require.Equal(t, want, receive(t, p.Wait(ctx, h1)), "waiting on an exited box answers at once")

	require.NoError(t, p.Vanish(h2))
	_, err = p.Adopt(ctx, h2)
	require.ErrorIs(t, err, provision.ErrNotFound)
	require.Equal(t, "box vanished", receive(t, p.Wait(ctx, h2)).Reason)

	hs, err := p.List(ctx)
	require.NoError(t, err)
	require.Equal(t, []provision.Handle{h1}, hs, "exited boxes are listed until stopped; vanished ones are not")

	require.ErrorIs(t, p.Exit(provision.Handle{ID: "nope"}, 1), fake.ErrUnknownBox)
	require.Equal(t, "box not found", receive(t, p.Wait(ctx, provision.Handle{ID: "nope"})).Reason)
}

func TestWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	p := fake.New()
	h, _ := p.Start(context.Background(), provision.Spec{WorkspaceID: "ws1"})
	ctx, cancel := context.WithCancel(context.Background())
	w := p.Wait(ctx, h)
	cancel()
	_, ok := <-w
	require.False(t, ok)
}

func TestLogs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := fake.New()
	p.SetLogs("ws1", []byte("a\nb\n"))
	p.AppendLogs("ws1", []byte("c\nd"))
	out, err := p.Logs(ctx, "ws1", 2)
	require.NoError(t, err)
	require.Equal(t, "c\nd", string(out))
	out, err = p.Logs(ctx, "ws1", 0)
	require.NoError(t, err)
	require.Equal(t, "a\nb\nc\nd", string(out))
	out, err = p.Logs(ctx, "other", 5)
	require.NoError(t, err)
	require.Empty(t, out)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := fake.New()
	var wg sync.WaitGroup
	for i := range 20 {
		// assert, not require: FailNow must not run outside the test goroutine.
		wg.Go(func() {
			ws := fmt.Sprintf("ws%d", i)
			h, err := p.Start(ctx, provision.Spec{WorkspaceID: ws})
			assert.NoError(t, err)
			w := p.Wait(ctx, h)
			_, _ = p.Inspect(ctx, h)
			_ = p.Calls()
			assert.NoError(t, p.Exit(h, i))
			assert.Equal(t, i, (<-w).ExitCode)
			assert.NoError(t, p.Stop(ctx, h))
		})
	}
	wg.Wait()
	require.Len(t, p.Starts(), 20)
	require.Len(t, p.Stops(), 20)
}
