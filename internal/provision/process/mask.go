package process

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/redact"
)

// keptGenerations is how many of a workspace's latest boxes' values are
// remembered for masking its output. The log file outlives boxes (a failed
// box's last words are read after it died) and holds several generations;
// values shared by generations are kept once.
const keptGenerations = 3

// envMemo is what one box was started with, for masking.
type envMemo struct {
	gen  int64
	vals []string
}

// remember records the values a box of the workspace was started with
// (its secrets and its token): they are masked in its output for as long
// as this provisioner reads it, even after a secret changed or was deleted.
func (p *Provisioner) remember(workspaceID string, gen int64, env map[string]string) {
	vals := redact.Values(env)
	p.memoMu.Lock()
	defer p.memoMu.Unlock()
	ms := p.memos[workspaceID]
	for i, m := range ms {
		if m.gen == gen {
			ms[i].vals = vals
			return
		}
	}
	ms = append(ms, envMemo{gen: gen, vals: vals})
	slices.SortFunc(ms, func(a, b envMemo) int { return int(a.gen - b.gen) })
	if len(ms) > keptGenerations {
		ms = slices.Clone(ms[len(ms)-keptGenerations:])
	}
	p.memos[workspaceID] = ms
}

// masked returns the values to mask in the workspace's output.
func (p *Provisioner) masked(workspaceID string) []string {
	p.memoMu.Lock()
	defer p.memoMu.Unlock()
	var out []string
	for _, m := range p.memos[workspaceID] {
		out = append(out, m.vals...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// rememberFromProc recovers what an adopted box was started with from its
// /proc/<pid>/environ (readable by root, or by the box's own user when
// boxes are not isolated).
func (p *Provisioner) rememberFromProc(workspaceID string, gen int64, pid int, publicKeys []string) {
	// A box that is exec'ing (a shell's "exec" into its agent) reads as an
	// empty environ for that moment: read again, a bounded number of times,
	// until its env is there (every box's names its workspace).
	var b []byte
	var err error
	for try := 0; try < 50; try++ {
		b, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil || bytes.Contains(b, []byte("ORGPLANE_WORKSPACE_ID=")) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.log.Warn("read an adopted box's env (its values are masked in its logs only while they are current secrets)",
			"workspace", workspaceID, "pid", pid, "err", err)
		return
	}
	env := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := bytes.Cut(kv, []byte("=")); ok {
			env[string(k)] = string(v)
		}
	}
	p.remember(workspaceID, gen, provision.MaskedEnv(env, publicKeys))
}
