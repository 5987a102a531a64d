// Package process runs boxes as plain OS processes on the control plane's
// machine: the embedded default runtime.
//
// A box must outlive the control plane (an upgrade or a crash of orgplane
// must not take the org's agents down with it), so every box runs in its own
// process group, with stdin on /dev/null and its output appended straight
// into a log file that the child holds itself: no pipe through orgplane
// that would break when orgplane goes away. A restarted control plane finds
// its boxes again with Adopt, from the persisted Handle.
//
// When orgplane runs as root with a uid range (Config.BoxUIDs), each box
// runs as its own unprivileged user in its own directory, so that boxes
// cannot read each other's files and environments, nor the control
// plane's; see isolate.go.
//
// A pid alone is not an identity: after the box dies the kernel may hand
// the number to an unrelated process. Every Handle therefore carries the
// process start time from /proc/<pid>/stat, and nothing is signalled unless
// it still matches.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/redact"
)

// Defaults for Config.
const (
	DefaultLogMaxBytes      = 1 << 20
	DefaultStopGrace        = 5 * time.Second
	DefaultLogCheckInterval = time.Second
	// adoptPollInterval is how often an adopted box (not our child, so it
	// cannot be waited for) is looked up in /proc.
	adoptPollInterval = 250 * time.Millisecond
	// killWait bounds the wait for a box to disappear after SIGKILL.
	killWait = 5 * time.Second
)

// Config configures a Provisioner.
type Config struct {
	// LogDir holds one <workspaceID>.log per workspace (and its rotated
	// <workspaceID>.log.1). Required; created (0700) if missing.
	LogDir string
	// LogMaxBytes caps each log file; above it the tail is kept. Default 1 MiB.
	LogMaxBytes int64
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL. Default 5s.
	StopGrace time.Duration
	// LogCheckInterval is how often log files are checked against the cap.
	// Default 1s.
	LogCheckInterval time.Duration
	// Logger receives the provisioner's own events. Default slog.Default().
	Logger *slog.Logger
	// BoxUIDs isolates boxes when the control plane runs as root: each box
	// runs as its own user and group (one id of the range, unique on the
	// machine while the box lives, recorded in its Handle), without
	// supplementary groups, in its own directory under BoxDir (0700, owned
	// by that user). Boxes then cannot read each other's files or
	// /proc/<pid>/environ, nor the control plane's. Not root, or a zero
	// range: boxes run as the control plane's user, and New logs a warning.
	BoxUIDs UIDRange
	// BoxDir holds the working directories of isolated boxes: an absolute
	// path outside the data directory, reachable by any user (New makes it
	// root's, mode 0711).
	BoxDir string
	// Programs that boxes run by default (the reference agent): when boxes
	// are isolated, New warns about any that a box user cannot execute.
	Programs []string
}

// Provisioner runs boxes as process groups. It implements
// provision.Provisioner, provision.Waiter and provision.Logger.
type Provisioner struct {
	cfg      Config
	log      *slog.Logger
	isolated bool // boxes run as their own users (BoxUIDs, as root)
	// shared: programs box users could not reach -> the copies they run
	// (written by New only).
	shared map[string]string

	mu    sync.Mutex
	boxes map[boxKey]*box

	logMu sync.Mutex // serialises log rotation and reads

	memoMu sync.Mutex
	memos  map[string][]envMemo // workspace -> values its latest boxes were started with

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // background goroutines that Close waits for
}

var (
	_ provision.Provisioner = (*Provisioner)(nil)
	_ provision.Waiter      = (*Provisioner)(nil)
	_ provision.Logger      = (*Provisioner)(nil)
)

// boxKey names one process incarnation: a pid number is reused, the pair is not.
type boxKey struct {
	pid   int
	ticks uint64
}

// box is a process that this Provisioner started (child) or adopted.
type box struct {
	key   boxKey
	child bool
	done  chan struct{} // closed once exit is set
	exit  provision.State
}

func (b *box) state() provision.State {
	select {
	case <-b.done:
		return b.exit
	default:
		return provision.State{Running: true, Reason: "running"}
	}
}

// New returns a Provisioner. Call Close when done with it; Close leaves the
// boxes running.
func New(cfg Config) (*Provisioner, error) {
	if cfg.LogDir == "" {
		return nil, errors.New("new process provisioner: LogDir is required")
	}
	if cfg.LogMaxBytes <= 0 {
		cfg.LogMaxBytes = DefaultLogMaxBytes
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.LogCheckInterval <= 0 {
		cfg.LogCheckInterval = DefaultLogCheckInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.LogDir, 0o700); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	// Box output may hold what a box printed of its env: only the control
	// plane reads it (the box writes through a descriptor it was given).
	if err := os.Chmod(cfg.LogDir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict log dir: %w", err)
	}
	p := &Provisioner{
		cfg:     cfg,
		log:     cfg.Logger.With("runtime", provision.RuntimeProcess),
		boxes:   make(map[boxKey]*box),
		shared:  make(map[string]string),
		memos:   make(map[string][]envMemo),
		closing: make(chan struct{}),
	}
	switch {
	case os.Geteuid() != 0:
		p.log.Warn("process boxes are not isolated: orgplane does not run as root, so every box runs as its user and can read the others' files and environment and the control plane's (data dir, tokens); use the docker runtime for agents you do not trust",
			"uid", os.Geteuid())
	case cfg.BoxUIDs.IsZero():
		p.log.Warn("process boxes are not isolated: no box uid range is configured, so every box runs as root; use the docker runtime for agents you do not trust")
	default:
		if err := setupIsolation(cfg.BoxDir); err != nil {
			return nil, fmt.Errorf("isolate process boxes: %w", err)
		}
		p.isolated = true
		p.log.Info("process boxes isolated", "uids", cfg.BoxUIDs.String(), "box_dir", cfg.BoxDir)
		for _, prog := range cfg.Programs {
			err := reachable(prog, cfg.BoxUIDs.First, cfg.BoxUIDs.First, false)
			if err == nil {
				continue
			}
			// Out of their reach (a `go run` builds under a 0700 temp
			// dir): boxes run a copy that they can reach.
			shared, serr := shareProgram(cfg.BoxDir, prog)
			if serr == nil {
				serr = reachable(shared, cfg.BoxUIDs.First, cfg.BoxUIDs.First, false)
			}
			if serr != nil {
				p.log.Warn("box users cannot run this program: boxes that run it will fail to start; install it where every user may execute it (e.g. /usr/local/bin)",
					"program", prog, "why", err.Error(), "copy_failed", serr.Error())
				continue
			}
			p.shared[prog] = shared
			p.log.Info("box users cannot reach this program; boxes run a copy of it", "program", prog, "why", err.Error(), "copy", shared)
		}
	}
	p.wg.Add(1)
	go p.capLoop()
	return p, nil
}

// Close stops the provisioner's background work (log capping, watchers of
// adopted boxes, pending Wait channels, which close without a value). It
// does not stop any box: boxes outlive the control plane by design.
func (p *Provisioner) Close() error {
	p.closeOnce.Do(func() { close(p.closing) })
	p.wg.Wait()
	return nil
}

// workspaceIDPattern keeps workspace ids usable as file names: they name the
// log file, so "../x" must never get that far.
var workspaceIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$`)

func checkWorkspaceID(id string) error {
	if !workspaceIDPattern.MatchString(id) {
		return fmt.Errorf("invalid workspace id %q", id)
	}
	return nil
}

// LogPath is the file that receives the output of the workspace's boxes.
func (p *Provisioner) LogPath(workspaceID string) string {
	return filepath.Join(p.cfg.LogDir, workspaceID+".log")
}

// Start runs spec.Command with exactly spec.Env. The command is resolved
// against the control plane's PATH (as exec.Command does); the box's own
// PATH applies only to what the box runs. ctx bounds nothing after the
// process is started: the box is not tied to it.
func (p *Provisioner) Start(ctx context.Context, spec provision.Spec) (provision.Handle, error) {
	if err := ctx.Err(); err != nil {
		return provision.Handle{}, fmt.Errorf("start box: %w", err)
	}
	if err := checkWorkspaceID(spec.WorkspaceID); err != nil {
		return provision.Handle{}, fmt.Errorf("start box: %w", err)
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return provision.Handle{}, fmt.Errorf("start box %s: empty command", spec.WorkspaceID)
	}
	h, err := p.start(spec)
	if err != nil {
		// exec errors name the binary, not the env; masking is the belt to
		// those braces, as the command line itself may carry a secret.
		return provision.Handle{}, redact.Error(fmt.Errorf("start box %s: %w", spec.WorkspaceID, err), provision.MaskedEnv(spec.Env, spec.PublicKeys))
	}
	p.log.Info("box started", "workspace", h.WorkspaceID, "generation", h.Generation, "pid", h.ID)
	return h, nil
}

func (p *Provisioner) start(spec provision.Spec) (provision.Handle, error) {
	logPath := p.LogPath(spec.WorkspaceID)
	p.logMu.Lock()
	if err := p.capFile(logPath); err != nil {
		p.log.Warn("cap box log", "workspace", spec.WorkspaceID, "err", err)
	}
	p.logMu.Unlock()
	// O_APPEND matters: the cap truncates this file under the running box,
	// and appending writers simply continue at the new end.
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return provision.Handle{}, fmt.Errorf("open log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return provision.Handle{}, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devNull.Close()

	cmd := exec.Command(spec.Command[0], spec.Command[1:]...)
	if cmd.Err != nil {
		return provision.Handle{}, fmt.Errorf("exec %s: %w", spec.Command[0], cmd.Err)
	}
	// Never nil: a nil Env would hand the box the control plane's own
	// environment, master key included.
	cmd.Env = envList(spec.Env)
	cmd.Stdin = devNull
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own process group: a signal to orgplane's group (Ctrl-C, a
	// service manager stopping it) does not reach the box, and Stop can
	// signal the box together with whatever it spawned. Nothing else is
	// inherited: Go opens every descriptor close-on-exec, so the box gets
	// exactly stdin, stdout and stderr.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var uid uint32
	var workDir string
	if p.isolated {
		if uid, workDir, err = p.claimUID(spec.WorkspaceID, spec.Generation); err != nil {
			return provision.Handle{}, err
		}
		if err := reachable(cmd.Path, uid, uid, false); err != nil {
			p.releaseUID(uid, workDir)
			return provision.Handle{}, fmt.Errorf("box user %d cannot run %s: %w (install the program where every user may execute it, e.g. /usr/local/bin)", uid, cmd.Path, err)
		}
		cmd.Dir = workDir
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}
	}
	closeOnExecAll()
	if err := cmd.Start(); err != nil {
		if p.isolated {
			p.releaseUID(uid, workDir)
		}
		return provision.Handle{}, fmt.Errorf("exec %s: %w", spec.Command[0], err)
	}
	pid := cmd.Process.Pid
	// The child is not reaped until cmd.Wait below, so its pid cannot be
	// reused before we read its start time.
	st, err := readStat(pid)
	if err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if p.isolated {
			p.releaseUID(uid, workDir)
		}
		return provision.Handle{}, fmt.Errorf("read start time of pid %d: %w", pid, err)
	}
	p.remember(spec.WorkspaceID, spec.Generation, provision.MaskedEnv(spec.Env, spec.PublicKeys))
	b := &box{key: boxKey{pid, st.startTicks}, child: true, done: make(chan struct{})}
	p.mu.Lock()
	p.boxes[b.key] = b
	p.mu.Unlock()
	// Reap the child (no zombies) and publish its exit. Not tracked by wg:
	// it ends when the box does, which Close must not wait for.
	go func() {
		_ = cmd.Wait() // the status is in ProcessState
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		b.exit = exitState(ws)
		close(b.done)
		p.log.Info("box exited", "workspace", spec.WorkspaceID, "generation", spec.Generation,
			"pid", pid, "reason", b.exit.Reason)
	}()
	return provision.Handle{
		Runtime:     provision.RuntimeProcess,
		WorkspaceID: spec.WorkspaceID,
		Generation:  spec.Generation,
		ID:          strconv.Itoa(pid),
		StartTicks:  st.startTicks,
		StartedAt:   time.Now().UTC(),
		UID:         uid,
		Dir:         workDir,
		PublicKeys:  spec.PublicKeys,
	}, nil
}

func envList(env map[string]string) []string {
	list := make([]string, 0, len(env))
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	slices.Sort(list) // deterministic, for anyone reading /proc/<pid>/environ
	return list
}

// exitState describes a waitpid-style status.
func exitState(ws syscall.WaitStatus) provision.State {
	if ws.Signaled() {
		sig := ws.Signal()
		name := unix.SignalName(sig)
		if name == "" {
			name = sig.String()
		}
		// 128+N is the shell's convention, so a code is always meaningful.
		return provision.State{Exited: true, ExitCode: 128 + int(sig), Reason: "killed by signal " + name}
	}
	code := ws.ExitStatus()
	return provision.State{Exited: true, ExitCode: code, Reason: fmt.Sprintf("exited with code %d", code)}
}

// parseHandle extracts the pid and refuses handles that cannot be verified.
func parseHandle(h provision.Handle) (boxKey, error) {
	pid, err := strconv.Atoi(h.ID)
	if err != nil || pid <= 1 {
		return boxKey{}, fmt.Errorf("invalid process handle id %q", h.ID)
	}
	if h.StartTicks == 0 {
		// Without a start time a reused pid cannot be told apart from the box.
		return boxKey{}, fmt.Errorf("process handle %s has no start time", h.ID)
	}
	return boxKey{pid: pid, ticks: h.StartTicks}, nil
}

// lookup returns the box we track for k, or nil.
func (p *Provisioner) lookup(k boxKey) *box {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.boxes[k]
}

// statOf reads the process of k. ok is false when it is gone or the pid now
// belongs to another process.
func statOf(k boxKey) (st procStat, ok bool, err error) {
	st, err = readStat(k.pid)
	if errors.Is(err, errGone) {
		return procStat{}, false, nil
	}
	if err != nil {
		return procStat{}, false, err
	}
	return st, st.startTicks == k.ticks, nil
}

// Inspect reports the box's state. A box this Provisioner started keeps its
// exit status until Stop releases it; otherwise a box that is gone (or whose
// pid now belongs to another process) is provision.ErrNotFound.
func (p *Provisioner) Inspect(_ context.Context, h provision.Handle) (provision.State, error) {
	k, err := parseHandle(h)
	if err != nil {
		return provision.State{}, fmt.Errorf("inspect box: %w", err)
	}
	if b := p.lookup(k); b != nil {
		return b.state(), nil
	}
	st, ok, err := statOf(k)
	if err != nil {
		return provision.State{}, fmt.Errorf("inspect box %s: %w", h.ID, err)
	}
	if !ok {
		return provision.State{}, provision.ErrNotFound
	}
	if st.zombie() {
		return zombieState(st), nil
	}
	return provision.State{Running: true, Reason: "running"}, nil
}

func zombieState(st procStat) provision.State {
	if st.hasExit {
		return exitState(syscall.WaitStatus(st.exitCode))
	}
	return provision.State{Exited: true, Reason: "exited (status unknown)"}
}

// Adopt takes over a box started by another Provisioner (typically a
// previous run of the control plane) so that Wait and Stop work for it.
// Such a box is not our child: its exit is noticed by polling /proc, and
// its exit code is known only if it is still a zombie when we look.
func (p *Provisioner) Adopt(_ context.Context, h provision.Handle) (provision.State, error) {
	k, err := parseHandle(h)
	if err != nil {
		return provision.State{}, fmt.Errorf("adopt box: %w", err)
	}
	b, err := p.track(k)
	if err != nil {
		if errors.Is(err, provision.ErrNotFound) {
			return provision.State{}, err
		}
		return provision.State{}, fmt.Errorf("adopt box %s: %w", h.ID, err)
	}
	if !b.child && b.state().Running {
		p.rememberFromProc(h.WorkspaceID, h.Generation, k.pid, h.PublicKeys)
	}
	p.log.Info("box adopted", "workspace", h.WorkspaceID, "generation", h.Generation, "pid", h.ID)
	return b.state(), nil
}

// track returns the box for k, registering and watching it if it is a live
// process we did not know.
func (p *Provisioner) track(k boxKey) (*box, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.boxes[k]; b != nil {
		return b, nil
	}
	st, ok, err := statOf(k)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, provision.ErrNotFound
	}
	b := &box{key: k, done: make(chan struct{})}
	p.boxes[k] = b
	if st.zombie() {
		b.exit = zombieState(st)
		close(b.done)
		return b, nil
	}
	select {
	case <-p.closing:
		// Closed: no watcher; the box just never reports an exit.
	default:
		p.wg.Add(1)
		go p.watch(b)
	}
	return b, nil
}

// watch polls /proc for an adopted box until it exits or Close.
func (p *Provisioner) watch(b *box) {
	defer p.wg.Done()
	t := time.NewTicker(adoptPollInterval)
	defer t.Stop()
	for {
		select {
		case <-p.closing:
			return
		case <-t.C:
		}
		st, ok, err := statOf(b.key)
		switch {
		case err != nil:
			p.log.Warn("watch adopted box", "pid", b.key.pid, "err", err)
			continue
		case ok && !st.zombie():
			continue
		case ok:
			b.exit = zombieState(st)
		default:
			// Reaped by its real parent: the code went with it.
			b.exit = provision.State{Reason: "exited (status unknown: not a child of this control plane)"}
		}
		close(b.done)
		return
	}
}

// Wait implements provision.Waiter. It works for boxes this Provisioner
// started and for any live box (which it adopts). A box that is already
// gone yields one State with Running false at once.
func (p *Provisioner) Wait(ctx context.Context, h provision.Handle) <-chan provision.State {
	ch := make(chan provision.State, 1)
	k, err := parseHandle(h)
	var b *box
	if err == nil {
		b, err = p.track(k)
	}
	if err != nil {
		ch <- provision.State{Reason: "box not found"}
		close(ch)
		return ch
	}
	go func() {
		defer close(ch)
		select {
		case <-b.done:
			ch <- b.exit
		case <-ctx.Done():
		case <-p.closing:
		}
	}()
	return ch
}

// Stop terminates the box's whole process group: SIGTERM, then SIGKILL
// after StopGrace. A box that is gone, or whose pid now belongs to another
// process, is left alone and Stop returns nil. If ctx ends during the grace
// period the box is killed at once.
func (p *Provisioner) Stop(ctx context.Context, h provision.Handle) error {
	k, err := parseHandle(h)
	if err != nil {
		return fmt.Errorf("stop box: %w", err)
	}
	b := p.lookup(k)
	log := p.log.With("workspace", h.WorkspaceID, "generation", h.Generation, "pid", k.pid)

	st, ok, err := statOf(k)
	if err != nil {
		return fmt.Errorf("stop box %s: %w", h.ID, err)
	}
	if !ok || st.zombie() {
		// Already exited; only a group it left behind may remain.
		p.sweep(k)
		p.release(k)
		p.releaseUID(h.UID, h.Dir)
		return nil
	}
	if err := signalBox(k, st, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop box %s: %w", h.ID, err)
	}
	log.Info("box stopping", "signal", "SIGTERM")
	gone, ctxErr := p.waitGone(ctx, k, b, p.cfg.StopGrace)
	if !gone {
		// Look again right before the kill: a non-child may have exited and
		// its pid been reused during the grace period.
		st, ok, err = statOf(k)
		if err != nil {
			return fmt.Errorf("stop box %s: %w", h.ID, err)
		}
		if ok && !st.zombie() {
			if err := signalBox(k, st, syscall.SIGKILL); err != nil {
				return fmt.Errorf("kill box %s: %w", h.ID, err)
			}
			log.Warn("box killed", "signal", "SIGKILL", "grace", p.cfg.StopGrace, "ctx_err", ctxErr)
		}
		if gone, _ = p.waitGone(context.Background(), k, b, killWait); !gone {
			return fmt.Errorf("stop box %s: still running %s after SIGKILL", h.ID, killWait)
		}
	}
	p.sweep(k)
	p.release(k)
	p.releaseUID(h.UID, h.Dir)
	return nil
}

// release forgets a box that Stop saw gone. Pending Wait channels keep
// their reference: an adopted box's watcher may notice the exit a poll
// later and still deliver it.
func (p *Provisioner) release(k boxKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.boxes, k)
}

// signalBox signals the box's process group, or the process alone if it
// left the group it was started in.
func signalBox(k boxKey, st procStat, sig syscall.Signal) error {
	target := k.pid
	if st.pgrp == k.pid {
		target = -k.pid
	}
	if err := syscall.Kill(target, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s: %w", unix.SignalName(sig), err)
	}
	return nil
}

// sweep SIGKILLs what is left of the box's process group after its leader
// exited (a grandchild that ignores SIGTERM, say). It is safe only because
// the kernel does not hand out a number that is still in use as a process
// group id: if the pid is free or still our zombie, a group with that id can
// only be ours. If the pid belongs to another process, the group is not
// touched.
func (p *Provisioner) sweep(k boxKey) {
	st, err := readStat(k.pid)
	if err == nil && st.startTicks != k.ticks {
		return
	}
	if err != nil && !errors.Is(err, errGone) {
		return
	}
	if err := syscall.Kill(-k.pid, syscall.SIGKILL); err == nil {
		p.log.Info("killed leftovers of box process group", "pgid", k.pid)
	}
}

// waitGone waits up to d for the box to exit. For our own child it waits
// until it is reaped; for other processes it polls /proc. ctxErr is set when
// ctx ended the wait early.
func (p *Provisioner) waitGone(ctx context.Context, k boxKey, b *box, d time.Duration) (gone bool, ctxErr error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	if b != nil && b.child {
		select {
		case <-b.done:
			return true, nil
		case <-timer.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st, ok, err := statOf(k)
		if err == nil && (!ok || st.zombie()) {
			return true, nil
		}
		select {
		case <-tick.C:
		case <-timer.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}
