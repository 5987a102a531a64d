// Package propagation_test drives secret-change propagation end to end with
// the real orgplane binary: `orgplane up` (SQLite) and `orgplane serve`
// (Postgres), boxes that are real processes running the reference agent,
// checked through /proc rather than through the control plane's word.
// Boxes outlive their control plane by design, so every test kills what it
// caused, and TestMain fails the run if anything is left.
package propagation_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
	"github.com/orgplane/orgplane/internal/pgtest"
)

var bg = context.Background()

// urls are the control planes this test binary started; TestMain checks
// that none left a box behind.
var urls struct {
	mu   sync.Mutex
	list []string
}

func registerURL(url string) {
	urls.mu.Lock()
	defer urls.mu.Unlock()
	urls.list = append(urls.list, url)
}

func TestMain(m *testing.M) {
	flag.Parse()
	// The tests wait on processes, not on the CPU.
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "4")
	}
	code := pgtest.Wrap(m).Run()
	urls.mu.Lock()
	list := append([]string(nil), urls.list...)
	urls.mu.Unlock()
	for _, url := range list {
		var left []int
		for range 40 {
			if left = boxesUnder(url); len(left) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(left) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: boxes of %s left behind (now killed): %v\n", url, left)
			e2etest.KillAllBoxesUnder(url)
			code = 1
		}
	}
	os.Exit(code)
}

// box is one live process of a control plane, read from /proc.
type box struct {
	pid int
	env map[string]string // may hold secret values: compare, never print
}

func (b box) gen() int64 {
	n, _ := strconv.ParseInt(b.env["ORGPLANE_GENERATION"], 10, 64)
	return n
}

func (b box) fingerprint() string { return b.env["ORGPLANE_ENV_FINGERPRINT"] }

// scanBoxes reads /proc once and returns the live processes whose
// environment has ORGPLANE_URL=url, by workspace id.
func scanBoxes(url string) map[string][]box {
	out := map[string][]box{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !e2etest.ProcessAlive(pid) {
			continue
		}
		env := map[string]string{}
		for _, kv := range bytes.Split(raw, []byte{0}) {
			if k, v, ok := strings.Cut(string(kv), "="); ok {
				env[k] = v
			}
		}
		if env["ORGPLANE_URL"] != url || env["ORGPLANE_WORKSPACE_ID"] == "" {
			continue
		}
		out[env["ORGPLANE_WORKSPACE_ID"]] = append(out[env["ORGPLANE_WORKSPACE_ID"]], box{pid: pid, env: env})
	}
	return out
}

func boxesUnder(url string) []int {
	var pids []int
	for _, bs := range scanBoxes(url) {
		for _, b := range bs {
			pids = append(pids, b.pid)
		}
	}
	return pids
}

// oneBox waits until the workspace has exactly one live box process.
func oneBox(t *testing.T, url, wsID string) box {
	t.Helper()
	var bs []box
	eventually(t, 15*time.Second, func() bool {
		bs = scanBoxes(url)[wsID]
		return len(bs) == 1
	}, func() string { return fmt.Sprintf("workspace %s: want one box process, have %d", wsID, len(bs)) })
	return bs[0]
}

// eventually polls cond until it holds (see e2etest.Wait).
func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	e2etest.Wait(t, timeout, cond, msg)
}

func randomValue(t *testing.T) string { return e2etest.SecretValue(t) }

// plane is one control plane process and its admin client.
type plane struct {
	t          *testing.T
	dir        string
	addr, url  string
	boxURL     string // ORGPLANE_URL of its boxes: url unless advertised elsewhere
	args       []string
	env        []string
	proc       *e2etest.Proc
	admin      *client.Client
	orgID      string
	platformID string
}

// newPlane prepares a control plane in a temp dir on a free address; its
// boxes are killed when the test ends, after the process itself stops.
func newPlane(t *testing.T) *plane {
	p := &plane{t: t, dir: t.TempDir()}
	p.addr = e2etest.FreeAddr(t)
	p.url = "http://" + p.addr
	p.boxURL = p.url
	registerURL(p.url)
	// Registered before e2etest.Start's own cleanup, so it runs after it: a
	// live control plane would re-provision what is killed.
	t.Cleanup(func() {
		if p.proc != nil {
			p.proc.Stop()
		}
		e2etest.KillAllBoxesUnder(p.boxURL)
	})
	return p
}

// upUnreachable is up with boxes told a control-plane URL under which no
// API answers (404): agent boxes never get a heartbeat through, so they are
// never healthy, while plain boxes are, once alive for their ready_after.
func upUnreachable(t *testing.T, flags ...string) *plane {
	t.Helper()
	p := newPlane(t)
	p.boxURL = p.url + "/nowhere"
	registerURL(p.boxURL)
	p.args = append([]string{"up", "--addr", p.addr, "--docker", "off", "--advertise-url", p.boxURL}, flags...)
	p.start()
	p.admin = client.New(p.url, e2etest.AdminToken(t, p.dir))
	p.whoami()
	return p
}

// up starts `orgplane up` with flags and waits until it has bootstrapped
// the default org.
func up(t *testing.T, flags ...string) *plane {
	t.Helper()
	p := newPlane(t)
	p.args = append([]string{"up", "--addr", p.addr, "--docker", "off"}, flags...)
	p.start()
	p.admin = client.New(p.url, e2etest.AdminToken(t, p.dir))
	p.whoami()
	return p
}

// serve starts `orgplane serve` on a database with a master key, in dev
// mode (short coalesce windows allowed).
func serve(t *testing.T, dsn, masterKey, token string, flags ...string) *plane {
	t.Helper()
	p := newPlane(t)
	p.args = append([]string{"serve", "--db", dsn, "--addr", p.addr, "--docker", "off"}, flags...)
	p.env = []string{"ORGPLANE_MASTER_KEY=" + masterKey, "ORGPLANE_DEV=1"}
	p.start()
	p.admin = client.New(p.url, token)
	p.whoami()
	return p
}

func (p *plane) start() {
	p.t.Helper()
	p.proc = e2etest.Start(p.t, p.dir, p.url, p.env, p.args...)
	eventually(p.t, 20*time.Second, func() bool {
		return strings.Contains(p.proc.Output(), "orgplane is serving on")
	}, func() string { return "orgplane did not finish starting:\n" + p.proc.Output() })
}

func (p *plane) whoami() {
	p.t.Helper()
	me, err := p.admin.Whoami(bg)
	require.NoError(p.t, err)
	p.orgID = me.OrgID
	list, err := p.admin.ListWorkspaces(bg)
	require.NoError(p.t, err)
	for _, w := range list {
		if w.Kind == "platform" {
			p.platformID = w.ID
		}
	}
	require.NotEmpty(p.t, p.platformID)
}

func (p *plane) get(id string) client.Workspace {
	p.t.Helper()
	w, err := p.admin.GetWorkspace(bg, id)
	require.NoError(p.t, err)
	return w
}

// waitWS waits until cond holds for the workspace.
func (p *plane) waitWS(id string, timeout time.Duration, what string, cond func(client.Workspace) bool) client.Workspace {
	p.t.Helper()
	var w client.Workspace
	eventually(p.t, timeout, func() bool {
		got, err := p.admin.GetWorkspace(bg, id)
		w = got
		return err == nil && cond(w)
	}, func() string {
		return fmt.Sprintf("workspace %s: %s; last seen status %s generation %d stale %v (last_error %q)",
			id, what, w.Status, w.Generation, w.Stale, w.LastError)
	})
	return w
}

// waitAll waits until cond holds for every listed workspace (one list call
// per poll).
func (p *plane) waitAll(ids []string, timeout time.Duration, what string, cond func(client.Workspace) bool) map[string]client.Workspace {
	p.t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var byID map[string]client.Workspace
	var bad []string
	eventually(p.t, timeout, func() bool {
		list, err := p.admin.ListWorkspaces(bg)
		if err != nil {
			return false
		}
		byID = map[string]client.Workspace{}
		bad = bad[:0]
		for _, w := range list {
			if want[w.ID] {
				byID[w.ID] = w
				if !cond(w) {
					bad = append(bad, w.ID)
				}
			}
		}
		return len(byID) == len(ids) && len(bad) == 0
	}, func() string {
		msg := fmt.Sprintf("%s: %d of %d workspaces not there yet", what, len(bad)+len(ids)-len(byID), len(ids))
		if len(bad) > 0 {
			w := byID[bad[0]]
			msg += fmt.Sprintf("; e.g. %s: status %s generation %d stale %v (last_error %q)", w.ID, w.Status, w.Generation, w.Stale, w.LastError)
		}
		return msg
	})
	return byID
}

// snapshot lists the workspaces among ids as they are now (for
// diagnostics: it never fails the test).
func (p *plane) snapshot(ids []string) []client.Workspace {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	list, _ := p.admin.ListWorkspaces(bg)
	var out []client.Workspace
	for _, w := range list {
		if want[w.ID] {
			out = append(out, w)
		}
	}
	return out
}

// createAgents creates n process workspaces running the reference agent,
// in batches, and waits until all are running.
func (p *plane) createAgents(prefix string, n, batch int) []string {
	p.t.Helper()
	var ids []string
	for start := 0; start < n; start += batch {
		var chunk []string
		for i := start; i < min(start+batch, n); i++ {
			w, err := p.admin.CreateWorkspace(bg, client.CreateWorkspace{Name: fmt.Sprintf("%s%03d", prefix, i)})
			require.NoError(p.t, err)
			chunk = append(chunk, w.ID)
		}
		p.waitAll(chunk, 60*time.Second, "agents running", func(w client.Workspace) bool { return w.Status == "running" })
		ids = append(ids, chunk...)
	}
	return ids
}

func (p *plane) restarts(id string) []client.RestartJob {
	p.t.Helper()
	js, err := p.admin.ListRestarts(bg, id)
	require.NoError(p.t, err)
	return js
}

func (p *plane) audit(id string) []client.AuditEntry {
	p.t.Helper()
	page, err := p.admin.ListAudit(bg, id, 1000, 0)
	require.NoError(p.t, err)
	return page.Entries
}

func countAction(entries []client.AuditEntry, action string) int {
	n := 0
	for _, e := range entries {
		if e.Action == action {
			n++
		}
	}
	return n
}

// metric scrapes /metrics and sums the samples of name whose labels
// include every label in want (name="value" pairs as they appear).
func metric(t *testing.T, url, name string, want ...string) float64 {
	t.Helper()
	v, err := scrape(url, name, want...)
	require.NoError(t, err)
	return v
}

func scrape(url, name string, want ...string) (float64, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range want {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

func decisionsByWS(res client.SecretWrite) map[string]client.Decision {
	out := map[string]client.Decision{}
	for _, d := range res.Decisions {
		out[d.WorkspaceID] = d
	}
	return out
}

func masterKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(b)
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// allRestarts lists a workspace's restart jobs, newest first, up to the
// API's largest page (1000) rather than its default one.
func (p *plane) allRestarts(id string) []client.RestartJob {
	p.t.Helper()
	var js []client.RestartJob
	require.NoError(p.t, p.admin.Do(bg, http.MethodGet, "/v1/workspaces/"+id+"/restarts?limit=1000", nil, &js))
	return js
}
