// Package provision runs boxes: the running instances of workspaces.
//
// A Provisioner is shaped like a nomad driver: Start a box, Stop it
// (idempotently), Inspect it, and Adopt one that a previous run of the
// control plane started. Optional abilities are small extra interfaces that
// a backend may implement (Logger, Lister, Waiter).
package provision

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// Runtimes orgplane knows.
const (
	RuntimeProcess  = "process"
	RuntimeDocker   = "docker"
	RuntimeKube     = "kubernetes"
	RuntimeExternal = "external"
)

// ErrNotFound is returned by Inspect/Adopt when the box no longer exists,
// or when the handle now names something that is not this box (a reused
// pid, a container of another workspace): backends never act on those.
var ErrNotFound = errors.New("box not found")

// Spec is everything a backend needs to start one box.
type Spec struct {
	OrgID       string
	WorkspaceID string
	Generation  int64
	// Command to run. process: argv (required; the caller fills in the
	// reference agent when the workspace spec has none). docker: optional
	// override of the image's entrypoint/cmd.
	Command []string
	// Image for docker and kubernetes.
	Image string
	// User for docker: "uid[:gid]" or "name[:group]"; empty: the backend's
	// unprivileged default, never the image's (often root) user.
	User string
	// Env is the complete environment of the box (effective env plus the
	// ORGPLANE_* variables). Values are secret: never log them.
	Env map[string]string
	// PublicKeys name the variables of Env that are not secret (the spec's
	// own env, which no secret overrides): their values are not masked in
	// the box's output ("info" of LOG_LEVEL=info would shred every line).
	PublicKeys []string
	// RuntimeSpec is the workspace's whole spec, for a runtime whose
	// settings go beyond the fields above (kubernetes: args, resources,
	// node selector...). The other runtimes ignore it.
	RuntimeSpec json.RawMessage
}

// Handle identifies a started box. It is persisted (as JSON) so that a
// restarted control plane can Adopt the box. It holds no secret.
type Handle struct {
	Runtime     string    `json:"runtime"`
	WorkspaceID string    `json:"workspace_id"`
	Generation  int64     `json:"generation"`
	ID          string    `json:"id"`                    // pid (process) or container id (docker)
	StartTicks  uint64    `json:"start_ticks,omitempty"` // process: /proc/<pid>/stat starttime, guards against pid reuse
	StartedAt   time.Time `json:"started_at"`
	// Node is where the box runs, for backends whose boxes only some hosts
	// can see (see Noder); empty: wherever this runtime is reachable.
	Node string `json:"node,omitempty"`
	// UID and Dir: an isolated process box's own user (and group) id and
	// working directory, released when it is stopped, after an adoption too.
	UID uint32 `json:"uid,omitempty"`
	Dir string `json:"dir,omitempty"`
	// PublicKeys are Spec.PublicKeys, so that an adopted box's output is
	// masked as its starter's was.
	PublicKeys []string `json:"public_keys,omitempty"`
}

// MaskedEnv returns the values of env to mask in a box's output: all but
// the public ones (the spec's, and the contract's ids).
func MaskedEnv(env map[string]string, publicKeys []string) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		if !slices.Contains(publicKeys, k) {
			out[k] = v
		}
	}
	return out
}

// State is what Inspect reports.
type State struct {
	Running bool
	// ExitCode is valid when !Running and Exited. A box killed by signal N
	// reports 128+N (the shell's convention, and what docker reports).
	ExitCode int
	// Exited: the box ran and exited with a known status (as opposed to
	// vanished, or exited with a status nobody could collect).
	Exited bool
	// Reason is human text: "running", "exited with code 3", "killed by
	// signal SIGKILL", "container removed"...
	Reason string
}

// Provisioner starts and stops boxes of one runtime.
type Provisioner interface {
	Start(ctx context.Context, spec Spec) (Handle, error)
	// Stop terminates the box (SIGTERM, then SIGKILL after a grace period)
	// and releases it. Stopping a box that is already gone is not an error.
	Stop(ctx context.Context, h Handle) error
	// Inspect reports whether the box is running. ErrNotFound when it is gone
	// without a trace.
	Inspect(ctx context.Context, h Handle) (State, error)
	// Adopt takes over a box started by a previous run of the control plane
	// (after its restart). It returns ErrNotFound when the box is gone.
	Adopt(ctx context.Context, h Handle) (State, error)
}

// Waiter is implemented by backends that can notify when a box exits.
// The channel receives one State when the box exits, then is closed. It is
// closed without a value when ctx ends. A box that is already gone yields
// its State (Running false) at once.
type Waiter interface {
	Wait(ctx context.Context, h Handle) <-chan State
}

// Logger is implemented by backends that keep a box's output.
type Logger interface {
	// Logs returns up to the last tail lines of the workspace's output
	// (all kept lines when tail <= 0); nil and no error when there is none.
	Logs(ctx context.Context, workspaceID string, tail int) ([]byte, error)
}

// Lister is implemented by backends that can enumerate the boxes they run
// (docker: by label), so that orphans can be found after a crash.
type Lister interface {
	List(ctx context.Context) ([]Handle, error)
}

// Noder is implemented by backends whose boxes are visible only from the
// host that started them (process: one machine's process table). Node
// names that host. The control plane records it in each handle and never
// inspects, adopts, stops or declares dead a box of another node: a
// process box "not found" from another host is not gone.
type Noder interface {
	Node() string
}
