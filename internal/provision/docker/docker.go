// Package docker runs boxes as Docker containers through the Engine API.
//
// One container per provision: named orgplane-<workspace>-g<generation> and
// labelled with the org, workspace and generation, so that a restarted
// control plane (or an operator) can tell every container apart and List
// finds orphans. Containers run independently of the control plane; nothing
// here ties their life to orgplane's.
//
// The provisioner touches only containers that carry its labels: a handle
// whose container id now names someone else's container is treated as gone,
// the docker equivalent of the process runtime's pid-reuse guard.
package docker

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/redact"
)

// Labels on every container this package creates.
const (
	LabelManaged    = "orgplane.managed" // "true"
	LabelOrg        = "orgplane.org"
	LabelWorkspace  = "orgplane.workspace"
	LabelGeneration = "orgplane.generation"
	// LabelPublicEnv names the env variables that are not secret (comma
	// separated): their values are not masked in the box's output.
	LabelPublicEnv = "orgplane.public-env"
)

// DefaultStopGrace is the default Config.StopGrace.
const DefaultStopGrace = 5 * time.Second

// DefaultUser runs a box that names no user: nobody:nogroup, whatever the
// image says (images often default to root).
const DefaultUser = "65534:65534"

// Config configures a Provisioner.
type Config struct {
	// Client talks to the engine. Nil: one is made from the environment
	// (DOCKER_HOST...), and Close closes it. The API version is negotiated
	// with the engine on first use either way.
	Client *client.Client
	// NetworkMode of the containers ("host", "bridge", a network name).
	// Empty: the engine's default.
	NetworkMode string
	// Labels are added to every container and required on every container
	// this provisioner inspects, stops or lists: several control planes
	// (or tests) can share one engine without seeing each other's boxes.
	Labels map[string]string
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
	// Rounded up to whole seconds (the engine's unit). Default 5s.
	StopGrace time.Duration
	// Init runs the engine's tiny init as PID 1, which reaps zombies and
	// gives the box default signal handling (a PID 1 ignores SIGTERM unless
	// it handles it).
	Init bool
	// NamePrefix starts every container name. Default "orgplane".
	NamePrefix string
	// Logger receives the provisioner's own events. Default slog.Default().
	Logger *slog.Logger
}

// Provisioner runs boxes as containers. It implements
// provision.Provisioner, provision.Waiter, provision.Logger and
// provision.Lister.
type Provisioner struct {
	cfg       Config
	c         *client.Client
	ownClient bool
	log       *slog.Logger
	node      engineNode // the engine's id, once it answered (see Node)
}

var (
	_ provision.Provisioner = (*Provisioner)(nil)
	_ provision.Waiter      = (*Provisioner)(nil)
	_ provision.Logger      = (*Provisioner)(nil)
	_ provision.Lister      = (*Provisioner)(nil)
)

// New returns a Provisioner. It does not contact the engine.
func New(cfg Config) (*Provisioner, error) {
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "orgplane"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, k := range []string{LabelManaged, LabelOrg, LabelWorkspace, LabelGeneration, LabelPublicEnv} {
		if _, ok := cfg.Labels[k]; ok {
			return nil, fmt.Errorf("new docker provisioner: label %s is reserved", k)
		}
	}
	cfg.Labels = maps.Clone(cfg.Labels)
	p := &Provisioner{cfg: cfg, c: cfg.Client, log: cfg.Logger.With("runtime", provision.RuntimeDocker)}
	if p.c == nil {
		c, err := client.New(client.FromEnv)
		if err != nil {
			return nil, fmt.Errorf("new docker client: %w", err)
		}
		p.c, p.ownClient = c, true
	}
	return p, nil
}

// Close closes the client if New made it. Containers keep running.
func (p *Provisioner) Close() error {
	if p.ownClient {
		return p.c.Close()
	}
	return nil
}

var nameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// ContainerName is the name of the container of one provision.
func (p *Provisioner) ContainerName(workspaceID string, generation int64) string {
	return fmt.Sprintf("%s-%s-g%d", p.cfg.NamePrefix, nameUnsafe.ReplaceAllString(workspaceID, "-"), generation)
}

// Start creates and starts the workspace's container from spec.Image, with
// exactly spec.Env added to the image's environment. spec.Command, if set,
// replaces the image's CMD (as in `docker run IMAGE COMMAND...`); its
// ENTRYPOINT stays. The image must be on the engine already: Start does not
// pull. A container that was created but failed to start is removed.
func (p *Provisioner) Start(ctx context.Context, spec provision.Spec) (provision.Handle, error) {
	if spec.WorkspaceID == "" {
		return provision.Handle{}, errors.New("start box: empty workspace id")
	}
	if spec.Image == "" {
		return provision.Handle{}, fmt.Errorf("start box %s: empty image", spec.WorkspaceID)
	}
	h, err := p.start(ctx, spec)
	if err != nil {
		// Engine messages are not ours; make sure none echoes a value.
		return provision.Handle{}, redact.Error(fmt.Errorf("start box %s: %w", spec.WorkspaceID, err), provision.MaskedEnv(spec.Env, spec.PublicKeys))
	}
	p.log.Info("box started", "workspace", h.WorkspaceID, "generation", h.Generation, "container", shortID(h.ID))
	return h, nil
}

func (p *Provisioner) start(ctx context.Context, spec provision.Spec) (provision.Handle, error) {
	labels := maps.Clone(p.cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManaged] = "true"
	labels[LabelOrg] = spec.OrgID
	labels[LabelWorkspace] = spec.WorkspaceID
	labels[LabelGeneration] = strconv.FormatInt(spec.Generation, 10)
	if len(spec.PublicKeys) > 0 {
		labels[LabelPublicEnv] = strings.Join(slices.Sorted(slices.Values(spec.PublicKeys)), ",")
	}

	env := make([]string, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)

	user := spec.User
	if user == "" {
		user = DefaultUser
	}
	cfg := &container.Config{
		Image:  spec.Image,
		Env:    env,
		Labels: labels,
		User:   user,
	}
	if len(spec.Command) > 0 {
		cfg.Cmd = slices.Clone(spec.Command)
	}
	useInit := p.cfg.Init
	hostCfg := &container.HostConfig{
		NetworkMode: container.NetworkMode(p.cfg.NetworkMode),
		Init:        &useInit,
		// orgplane decides about restarts (with its rules), not the engine.
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		// Nothing of the host is mounted, the data dir least of all; and
		// no setuid program takes a box back to root.
		SecurityOpt: []string{"no-new-privileges"},
	}
	name := p.ContainerName(spec.WorkspaceID, spec.Generation)
	created, err := p.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       name,
		Config:     cfg,
		HostConfig: hostCfg,
	})
	if err != nil {
		return provision.Handle{}, fmt.Errorf("create container %s: %w", name, err)
	}
	if _, err := p.c.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		// A fresh context: ctx may be what just failed.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, rmErr := p.c.ContainerRemove(rmCtx, created.ID, client.ContainerRemoveOptions{Force: true}); rmErr != nil && !cerrdefs.IsNotFound(rmErr) {
			p.log.Warn("remove container that failed to start", "container", shortID(created.ID), "err", rmErr)
		}
		return provision.Handle{}, fmt.Errorf("start container %s: %w", name, err)
	}
	startedAt := time.Now().UTC()
	if ins, err := p.c.ContainerInspect(ctx, created.ID, client.ContainerInspectOptions{}); err == nil && ins.Container.State != nil {
		if t, err := time.Parse(time.RFC3339Nano, ins.Container.State.StartedAt); err == nil {
			startedAt = t.UTC()
		}
	}
	return provision.Handle{
		Runtime:     provision.RuntimeDocker,
		WorkspaceID: spec.WorkspaceID,
		Generation:  spec.Generation,
		ID:          created.ID,
		StartedAt:   startedAt,
	}, nil
}

// owned reports whether the inspected container is the box of h (and
// carries this provisioner's labels).
func (p *Provisioner) owned(ins container.InspectResponse, h provision.Handle) bool {
	if ins.Config == nil {
		return false
	}
	l := ins.Config.Labels
	if l[LabelManaged] != "true" || l[LabelWorkspace] != h.WorkspaceID ||
		l[LabelGeneration] != strconv.FormatInt(h.Generation, 10) {
		return false
	}
	for k, v := range p.cfg.Labels {
		if l[k] != v {
			return false
		}
	}
	return true
}

// inspect returns the container of h; provision.ErrNotFound when it is gone
// or is not h's box.
func (p *Provisioner) inspect(ctx context.Context, h provision.Handle) (container.InspectResponse, error) {
	if h.ID == "" {
		return container.InspectResponse{}, errors.New("empty container id in handle")
	}
	res, err := p.c.ContainerInspect(ctx, h.ID, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return container.InspectResponse{}, provision.ErrNotFound
	}
	if err != nil {
		return container.InspectResponse{}, fmt.Errorf("inspect container %s: %w", shortID(h.ID), err)
	}
	if !p.owned(res.Container, h) {
		return container.InspectResponse{}, provision.ErrNotFound
	}
	return res.Container, nil
}

// stateOf describes an inspected container.
func stateOf(ins container.InspectResponse) provision.State {
	s := ins.State
	switch {
	case s == nil:
		return provision.State{Reason: "container state unknown"}
	case s.Running || s.Restarting:
		return provision.State{Running: true, Reason: "running"}
	case s.Status == container.StateCreated:
		return provision.State{Reason: "container created, not started"}
	case s.OOMKilled:
		return provision.State{Exited: true, ExitCode: s.ExitCode, Reason: fmt.Sprintf("killed: out of memory (exit code %d)", s.ExitCode)}
	default: // exited, dead, or being removed (as Stop does) after it ran
		return provision.State{Exited: true, ExitCode: s.ExitCode, Reason: fmt.Sprintf("exited with code %d", s.ExitCode)}
	}
}

// Inspect reports the container's state; provision.ErrNotFound when it was
// removed (or the id is not this box's container).
func (p *Provisioner) Inspect(ctx context.Context, h provision.Handle) (provision.State, error) {
	ins, err := p.inspect(ctx, h)
	if err != nil {
		return provision.State{}, err
	}
	return stateOf(ins), nil
}

// Adopt takes over a container started by a previous run of the control
// plane. The engine owns containers, so there is nothing to re-attach:
// Adopt checks that it is still there and still this box.
func (p *Provisioner) Adopt(ctx context.Context, h provision.Handle) (provision.State, error) {
	ins, err := p.inspect(ctx, h)
	if err != nil {
		return provision.State{}, err
	}
	p.log.Info("box adopted", "workspace", h.WorkspaceID, "generation", h.Generation, "container", shortID(h.ID))
	return stateOf(ins), nil
}

// Stop stops the container (SIGTERM, SIGKILL after StopGrace) and removes
// it. A container that is gone, or that is not this box's, is not an error.
func (p *Provisioner) Stop(ctx context.Context, h provision.Handle) error {
	ins, err := p.inspect(ctx, h)
	if errors.Is(err, provision.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop box: %w", err)
	}
	timeout := int(math.Ceil(p.cfg.StopGrace.Seconds()))
	if _, err := p.c.ContainerStop(ctx, ins.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", shortID(ins.ID), err)
	}
	_, err = p.c.ContainerRemove(ctx, ins.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	// Conflict: a removal already in progress, which is what we want.
	if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("remove container %s: %w", shortID(ins.ID), err)
	}
	p.log.Info("box stopped", "workspace", h.WorkspaceID, "generation", h.Generation, "container", shortID(ins.ID))
	return nil
}

// Wait implements provision.Waiter with the engine's wait API. The wait is
// registered with the engine before Wait returns, so a Stop that follows
// cannot slip its exit past it. A container that is gone (or not this
// box's) yields one State at once.
func (p *Provisioner) Wait(ctx context.Context, h provision.Handle) <-chan provision.State {
	ch := make(chan provision.State, 1)
	step := p.armWait(ctx, h)
	go func() {
		defer close(ch)
		for {
			switch step.kind {
			case waitDone:
				ch <- step.st
				return
			case waitCancelled:
				return
			case waitRetry:
				if !sleep(ctx, time.Second) {
					return
				}
				step = p.armWait(ctx, h)
			case waitArmed:
				step = p.collectWait(ctx, h, step.res)
			}
		}
	}()
	return ch
}

type waitKind int

const (
	waitArmed     waitKind = iota // res is pending
	waitDone                      // st is the exit
	waitCancelled                 // ctx ended
	waitRetry                     // transient error: arm again after a pause
)

type waitStep struct {
	kind waitKind
	st   provision.State
	res  client.ContainerWaitResult
}

var removedState = provision.State{Reason: "container removed"}

// armWait checks the container and, while it runs, registers an engine wait.
func (p *Provisioner) armWait(ctx context.Context, h provision.Handle) waitStep {
	ins, err := p.inspect(ctx, h)
	switch {
	case ctx.Err() != nil:
		return waitStep{kind: waitCancelled}
	case errors.Is(err, provision.ErrNotFound):
		return waitStep{kind: waitDone, st: removedState}
	case err != nil:
		p.log.Warn("wait for box", "container", shortID(h.ID), "err", err)
		return waitStep{kind: waitRetry}
	}
	if st := stateOf(ins); !st.Running && st.Exited {
		return waitStep{kind: waitDone, st: st}
	}
	// The client returns once the engine answered the request's headers,
	// which it does after registering the waiter.
	res := p.c.ContainerWait(ctx, ins.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	return waitStep{kind: waitArmed, res: res}
}

// collectWait reads an armed wait. It never selects on ctx: the client
// delivers ctx's end on res.Error, and a result nobody reads would block
// the client's goroutine forever.
func (p *Provisioner) collectWait(ctx context.Context, h provision.Handle, res client.ContainerWaitResult) waitStep {
	select {
	case r := <-res.Result:
		ins, err := p.inspect(ctx, h)
		if errors.Is(err, provision.ErrNotFound) || (err != nil && ctx.Err() != nil) {
			// Removed right after it stopped (Stop does that): the wait's
			// status code is all that is left.
			code := int(r.StatusCode)
			return waitStep{kind: waitDone, st: provision.State{Exited: true, ExitCode: code, Reason: fmt.Sprintf("exited with code %d", code)}}
		}
		if err == nil {
			st := stateOf(ins)
			if st.Exited {
				return waitStep{kind: waitDone, st: st}
			}
			if !st.Running {
				code := int(r.StatusCode)
				return waitStep{kind: waitDone, st: provision.State{Exited: true, ExitCode: code, Reason: fmt.Sprintf("exited with code %d", code)}}
			}
		}
		return waitStep{kind: waitRetry} // restarted under us, or a transient error
	case err := <-res.Error:
		if ctx.Err() != nil {
			return waitStep{kind: waitCancelled}
		}
		if cerrdefs.IsNotFound(err) {
			return waitStep{kind: waitDone, st: removedState}
		}
		p.log.Warn("wait for box", "container", shortID(h.ID), "err", err)
		return waitStep{kind: waitRetry}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// managedFilter selects this provisioner's containers.
func (p *Provisioner) managedFilter() client.Filters {
	f := make(client.Filters).Add("label", LabelManaged+"=true")
	for k, v := range p.cfg.Labels {
		f.Add("label", k+"="+v)
	}
	return f
}

// List returns a Handle for every container of this provisioner, running
// or not, so that orphans left by a crash can be found and stopped.
func (p *Provisioner) List(ctx context.Context) ([]provision.Handle, error) {
	res, err := p.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: p.managedFilter()})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	hs := make([]provision.Handle, 0, len(res.Items))
	for _, c := range res.Items {
		gen, err := strconv.ParseInt(c.Labels[LabelGeneration], 10, 64)
		if err != nil {
			p.log.Warn("container with bad generation label", "container", shortID(c.ID))
			continue
		}
		hs = append(hs, provision.Handle{
			Runtime:     provision.RuntimeDocker,
			WorkspaceID: c.Labels[LabelWorkspace],
			Generation:  gen,
			ID:          c.ID,
			StartedAt:   time.Unix(c.Created, 0).UTC(), // creation: the list has no start time
		})
	}
	slices.SortFunc(hs, func(a, b provision.Handle) int {
		return cmp.Or(cmp.Compare(a.WorkspaceID, b.WorkspaceID), cmp.Compare(a.Generation, b.Generation))
	})
	return hs, nil
}

// Logs returns the last tail lines (all when tail <= 0) of the output of
// the workspace's newest container, stdout and stderr merged. The engine
// keeps output only while the container exists: after Stop removed it
// there is nothing (nil, nil).
func (p *Provisioner) Logs(ctx context.Context, workspaceID string, tail int) ([]byte, error) {
	f := p.managedFilter().Add("label", LabelWorkspace+"="+workspaceID)
	res, err := p.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", workspaceID, err)
	}
	if len(res.Items) == 0 {
		return nil, nil
	}
	newest := slices.MaxFunc(res.Items, func(a, b container.Summary) int {
		ga, _ := strconv.ParseInt(a.Labels[LabelGeneration], 10, 64)
		gb, _ := strconv.ParseInt(b.Labels[LabelGeneration], 10, 64)
		return cmp.Or(cmp.Compare(ga, gb), cmp.Compare(a.Created, b.Created))
	})
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "all"}
	if tail > 0 {
		opts.Tail = strconv.Itoa(tail)
	}
	rc, err := p.c.ContainerLogs(ctx, newest.ID, opts)
	if cerrdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", workspaceID, err)
	}
	defer rc.Close()
	// Containers run without a TTY, so the stream is multiplexed; both
	// halves go to one buffer, in the order the engine sent them.
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, rc); err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", workspaceID, err)
	}
	vals, err := p.startedWith(ctx, newest.ID)
	if err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", workspaceID, err)
	}
	return []byte(redact.Strings(buf.String(), vals)), nil
}

// startedWith returns the values to mask in a container's output: every
// value of the env it was started with (its secrets, its token: the
// container keeps them, so this survives a control-plane restart), but the
// public contract variables and what its image sets by itself (PATH...).
func (p *Provisioner) startedWith(ctx context.Context, id string) ([]string, error) {
	ins, err := p.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspect container %s: %w", shortID(id), err)
	}
	if ins.Container.Config == nil {
		return nil, nil
	}
	fromImage := map[string]bool{}
	if img, err := p.c.ImageInspect(ctx, ins.Container.Image); err == nil && img.Config != nil {
		for _, kv := range img.Config.Env {
			fromImage[kv] = true
		}
	}
	env := map[string]string{}
	for _, kv := range ins.Container.Config.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && !fromImage[kv] {
			env[k] = v
		}
	}
	var public []string
	if l := ins.Container.Config.Labels[LabelPublicEnv]; l != "" {
		public = strings.Split(l, ",")
	}
	return redact.Values(provision.MaskedEnv(env, public)), nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
