// Package fake is an in-memory provision.Provisioner for fast tests of the
// layers above the backends (restart jobs, propagation, the API): it runs
// nothing, records every call, and lets a test script failures and exits.
//
//	p := fake.New()
//	p.FailNextStart(errors.New("no capacity"))   // the next Start fails
//	... code under test starts and stops boxes ...
//	h, _ := p.Running("ws1")                     // the live box of ws1
//	p.Exit(h, 3)                                 // it crashes: Wait fires
//	require.Len(t, p.Stops(), 1)
//
// It is safe for concurrent use.
package fake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/orgplane/orgplane/internal/provision"
)

// Runtime is the default Handle.Runtime of a fake Provisioner.
const Runtime = "fake"

// Call is one recorded call.
type Call struct {
	Op     string // "start", "stop", "inspect", "adopt", "wait", "logs"
	Spec   provision.Spec
	Handle provision.Handle
	Err    error // what the call returned
	At     time.Time
	// Killed: a stop that terminated a running box (not the clean-up of one
	// that had exited or vanished already).
	Killed bool
}

// Option configures a Provisioner.
type Option func(*Provisioner)

// WithRuntime sets Handle.Runtime (default "fake"), for code that routes
// handles to backends by runtime.
func WithRuntime(runtime string) Option {
	return func(p *Provisioner) { p.runtime = runtime }
}

// WithNode makes the fake a provision.Noder on the named node: its boxes
// are visible only to control planes whose fake is on the same node.
func WithNode(node string) Option {
	return func(p *Provisioner) { p.node = node }
}

// Node is where the fake's boxes run ("" unless WithNode).
func (p *Provisioner) Node() string { return p.node }

type box struct {
	h       provision.Handle
	spec    provision.Spec
	state   provision.State
	gone    bool // vanished or stopped: Inspect says ErrNotFound
	done    chan struct{}
	stopped bool
}

// Provisioner is the fake. The zero value is not usable; call New.
type Provisioner struct {
	runtime string
	node    string

	mu         sync.Mutex
	next       int
	boxes      map[string]*box // by Handle.ID
	order      []string        // Handle.IDs in start order
	calls      []Call
	startErrs  []error
	stopErrs   []error
	adoptErrs  []error
	hangStarts int
	logs       map[string][]byte // by workspace id
}

var (
	_ provision.Provisioner = (*Provisioner)(nil)
	_ provision.Waiter      = (*Provisioner)(nil)
	_ provision.Logger      = (*Provisioner)(nil)
	_ provision.Lister      = (*Provisioner)(nil)
)

// New returns an empty fake.
func New(opts ...Option) *Provisioner {
	p := &Provisioner{runtime: Runtime, boxes: map[string]*box{}, logs: map[string][]byte{}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func (p *Provisioner) record(c Call) {
	c.At = time.Now()
	p.calls = append(p.calls, c)
}

func cloneSpec(s provision.Spec) provision.Spec {
	s.Command = slices.Clone(s.Command)
	s.Env = maps.Clone(s.Env)
	return s
}

// FailNextStart makes the next Start return err (wrapped) without starting
// anything. Calls queue: two calls fail the next two Starts.
func (p *Provisioner) FailNextStart(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.startErrs = append(p.startErrs, err)
}

// FailNextAdopts makes the next n Adopt calls return err (an engine that is
// not up yet, EMFILE reading /proc): the box's state is unknown, not gone.
func (p *Provisioner) FailNextAdopts(err error, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		p.adoptErrs = append(p.adoptErrs, err)
	}
}

// HangNextStarts makes the next n Start calls hang until their context
// ends, as a daemon that stopped answering does.
func (p *Provisioner) HangNextStarts(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hangStarts += n
}

// FailNextStop makes the next Stop return err and leave the box running.
func (p *Provisioner) FailNextStop(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopErrs = append(p.stopErrs, err)
}

// Start records the call and "runs" a box: it is running until Stop, Exit
// or Vanish.
func (p *Provisioner) Start(ctx context.Context, spec provision.Spec) (provision.Handle, error) {
	p.mu.Lock()
	if p.hangStarts > 0 {
		// A hung engine: the call returns only when its context ends.
		p.hangStarts--
		p.mu.Unlock()
		<-ctx.Done()
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	spec = cloneSpec(spec)
	if err := ctx.Err(); err != nil {
		err = fmt.Errorf("start box: %w", err)
		p.record(Call{Op: "start", Spec: spec, Err: err})
		return provision.Handle{}, err
	}
	if len(p.startErrs) > 0 {
		err := fmt.Errorf("start box %s: %w", spec.WorkspaceID, p.startErrs[0])
		p.startErrs = p.startErrs[1:]
		p.record(Call{Op: "start", Spec: spec, Err: err})
		return provision.Handle{}, err
	}
	p.next++
	h := provision.Handle{
		Runtime:     p.runtime,
		WorkspaceID: spec.WorkspaceID,
		Generation:  spec.Generation,
		ID:          "fake-" + strconv.Itoa(p.next),
		StartedAt:   time.Now().UTC(),
	}
	p.boxes[h.ID] = &box{h: h, spec: spec, state: provision.State{Running: true, Reason: "running"}, done: make(chan struct{})}
	p.order = append(p.order, h.ID)
	p.record(Call{Op: "start", Spec: spec, Handle: h})
	return h, nil
}

// finish ends a running box with st. Caller holds mu.
func (b *box) finish(st provision.State) {
	if !b.state.Running {
		return
	}
	b.state = st
	close(b.done)
}

// Stop records the call and ends the box ("killed by signal SIGTERM").
// Stopping an unknown or gone box is not an error.
func (p *Provisioner) Stop(_ context.Context, h provision.Handle) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.stopErrs) > 0 {
		err := fmt.Errorf("stop box %s: %w", h.ID, p.stopErrs[0])
		p.stopErrs = p.stopErrs[1:]
		p.record(Call{Op: "stop", Handle: h, Err: err})
		return err
	}
	b := p.boxes[h.ID]
	p.record(Call{Op: "stop", Handle: h, Killed: b != nil && !b.gone && b.state.Running})
	if b != nil {
		b.finish(provision.State{Exited: true, ExitCode: 143, Reason: "killed by signal SIGTERM"})
		b.gone, b.stopped = true, true
	}
	return nil
}

func (p *Provisioner) lookup(h provision.Handle) (*box, error) {
	b := p.boxes[h.ID]
	if b == nil || b.gone {
		return nil, provision.ErrNotFound
	}
	return b, nil
}

// Inspect reports the box's state; provision.ErrNotFound once it was
// stopped or vanished, or for a handle this fake never issued.
func (p *Provisioner) Inspect(_ context.Context, h provision.Handle) (provision.State, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := p.lookup(h)
	p.record(Call{Op: "inspect", Handle: h, Err: err})
	if err != nil {
		return provision.State{}, err
	}
	return b.state, nil
}

// Adopt is Inspect, recorded as "adopt": the fake outlives any "restart"
// of the code under test that keeps using the same instance.
func (p *Provisioner) Adopt(_ context.Context, h provision.Handle) (provision.State, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.adoptErrs) > 0 {
		err := p.adoptErrs[0]
		p.adoptErrs = p.adoptErrs[1:]
		p.record(Call{Op: "adopt", Handle: h, Err: err})
		return provision.State{}, err
	}
	b, err := p.lookup(h)
	p.record(Call{Op: "adopt", Handle: h, Err: err})
	if err != nil {
		return provision.State{}, err
	}
	return b.state, nil
}

// Wait delivers the box's exit (Exit, Stop, Vanish). An unknown handle
// yields one State at once.
func (p *Provisioner) Wait(ctx context.Context, h provision.Handle) <-chan provision.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record(Call{Op: "wait", Handle: h})
	ch := make(chan provision.State, 1)
	b := p.boxes[h.ID]
	if b == nil {
		ch <- provision.State{Reason: "box not found"}
		close(ch)
		return ch
	}
	go func() {
		defer close(ch)
		select {
		case <-b.done:
			p.mu.Lock()
			st := b.state
			p.mu.Unlock()
			ch <- st
		case <-ctx.Done():
		}
	}()
	return ch
}

// Logs returns what SetLogs/AppendLogs stored for the workspace, last tail
// lines (all when tail <= 0).
func (p *Provisioner) Logs(_ context.Context, workspaceID string, tail int) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record(Call{Op: "logs", Handle: provision.Handle{WorkspaceID: workspaceID}})
	data := p.logs[workspaceID]
	if tail > 0 {
		lines := splitLines(data)
		if len(lines) > tail {
			lines = lines[len(lines)-tail:]
		}
		var out []byte
		for _, l := range lines {
			out = append(out, l...)
		}
		return out, nil
	}
	return slices.Clone(data), nil
}

func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := slices.Index(b, '\n')
		if i < 0 {
			lines = append(lines, b)
			break
		}
		lines = append(lines, b[:i+1])
		b = b[i+1:]
	}
	return lines
}

// SetLogs replaces the workspace's output.
func (p *Provisioner) SetLogs(workspaceID string, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logs[workspaceID] = slices.Clone(data)
}

// AppendLogs adds to the workspace's output.
func (p *Provisioner) AppendLogs(workspaceID string, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logs[workspaceID] = append(p.logs[workspaceID], data...)
}

// List returns the boxes that are not gone (running or exited), in start
// order.
func (p *Provisioner) List(context.Context) ([]provision.Handle, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var hs []provision.Handle
	for _, id := range p.order {
		if b := p.boxes[id]; !b.gone {
			hs = append(hs, b.h)
		}
	}
	return hs, nil
}

// ErrUnknownBox is returned by Exit and Vanish for handles the fake never
// issued.
var ErrUnknownBox = errors.New("fake: unknown box")

// Exit makes a running box exit with code ("exited with code N"): its
// Wait channels fire and Inspect reports the exit until Stop.
func (p *Provisioner) Exit(h provision.Handle, code int) error {
	return p.End(h, provision.State{Exited: true, ExitCode: code, Reason: fmt.Sprintf("exited with code %d", code)})
}

// End makes a running box end with the given state (Running is forced false).
func (p *Provisioner) End(h provision.Handle, st provision.State) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.boxes[h.ID]
	if b == nil {
		return ErrUnknownBox
	}
	st.Running = false
	b.finish(st)
	return nil
}

// Vanish makes a box disappear without a trace (as after a host reboot):
// Wait fires with "box vanished", Inspect and Adopt say ErrNotFound.
func (p *Provisioner) Vanish(h provision.Handle) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.boxes[h.ID]
	if b == nil {
		return ErrUnknownBox
	}
	b.finish(provision.State{Reason: "box vanished"})
	b.gone = true
	return nil
}

// Running returns the newest running box of the workspace.
func (p *Provisioner) Running(workspaceID string) (provision.Handle, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range slices.Backward(p.order) {
		if b := p.boxes[id]; b.h.WorkspaceID == workspaceID && b.state.Running {
			return b.h, true
		}
	}
	return provision.Handle{}, false
}

// State returns the box's current state and whether the fake knows it
// (stopped and vanished boxes included).
func (p *Provisioner) State(h provision.Handle) (provision.State, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.boxes[h.ID]
	if b == nil {
		return provision.State{}, false
	}
	return b.state, true
}

// Calls returns every recorded call, oldest first.
func (p *Provisioner) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// Starts returns the specs of all Start calls (failed ones included), in
// order. The specs are copies: tests may inspect Env freely.
func (p *Provisioner) Starts() []provision.Spec {
	return collect(p, "start", func(c Call) provision.Spec { return c.Spec })
}

// Stops returns the handles of all Stop calls, in order.
func (p *Provisioner) Stops() []provision.Handle {
	return collect(p, "stop", func(c Call) provision.Handle { return c.Handle })
}

// StartedEnv returns the env the latest box of a workspace's generation
// was started with (its ORGPLANE_TOKEN, say), if one was.
func (p *Provisioner) StartedEnv(workspaceID string, gen int64) (env map[string]string, ok bool) {
	for _, sp := range p.Starts() {
		if sp.WorkspaceID == workspaceID && sp.Generation == gen {
			env, ok = sp.Env, true
		}
	}
	return env, ok
}

// EnvOf returns the env the box with handle h was started with.
func (p *Provisioner) EnvOf(h provision.Handle) (map[string]string, bool) {
	for _, c := range p.Calls() {
		if c.Op == "start" && c.Err == nil && c.Handle.ID == h.ID {
			return c.Spec.Env, true
		}
	}
	return nil, false
}

// Kills returns the handles of the stops that terminated a running box.
func (p *Provisioner) Kills() []provision.Handle {
	var out []provision.Handle
	for _, c := range p.Calls() {
		if c.Op == "stop" && c.Killed {
			out = append(out, c.Handle)
		}
	}
	return out
}

func collect[T any](p *Provisioner, op string, f func(Call) T) []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []T
	for _, c := range p.calls {
		if c.Op == op {
			out = append(out, f(c))
		}
	}
	return out
}
