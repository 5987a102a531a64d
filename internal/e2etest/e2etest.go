// Package e2etest drives the real orgplane binary for end-to-end tests:
// it builds the binary once per test binary and starts `orgplane up` or
// `orgplane serve` as a child process.
package e2etest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/orgplane (static, CGO_ENABLED=0, so that it also runs
// in a FROM scratch image) once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "orgplane-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		// As root, process boxes run as their own users, and the reference
		// agent is this binary: they must be able to execute it.
		if err := os.Chmod(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "orgplane")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/orgplane/orgplane/cmd/orgplane")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// FreeAddr returns a free loopback address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Proc is a running orgplane server process.
type Proc struct {
	t       testing.TB
	Cmd     *exec.Cmd
	URL     string
	DataDir string
	mu      sync.Mutex
	out     bytes.Buffer
	done    chan struct{}
}

// Output returns what the process printed so far (stdout and stderr).
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

type lockedWriter struct{ p *Proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Start runs `orgplane <args...>` (e.g. "up", "--addr", addr) in dataDir
// with extra env, and waits until /readyz answers at url.
func Start(t testing.TB, dataDir, url string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Dir = dataDir
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: a kill -9 of the server must not take the
	// boxes with it (they have their own groups anyway).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Proc{t: t, Cmd: cmd, URL: url, DataDir: dataDir, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.Stop() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("orgplane %v exited early:\n%s", args, p.Output())
		default:
		}
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("orgplane %v not ready within 30s:\n%s", args, p.Output())
	return nil
}

// Kill sends SIGKILL to the server alone (not its boxes) and waits.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to 15s (then SIGKILL).
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.Kill()
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// AdminToken reads DATA_DIR/admin.token (written by `orgplane up`).
func AdminToken(t testing.TB, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "orgplane-data", "admin.token"))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// CLI runs the binary as a client command and returns stdout, stderr and
// the exit code.
func CLI(t testing.TB, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	return CLIStdin(t, dir, env, "", args...)
}

// CLIStdin is CLI with stdin.
func CLIStdin(t testing.TB, dir string, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	bin := Binary(t) // built before the clock starts: a build on a busy machine is slow
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run orgplane %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// Eventually polls cond every 50ms until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s: "+msg, append([]any{timeout}, args...)...)
}

// Client returns an API client of p with token.
func (p *Proc) Client(token string) *client.Client { return client.New(p.URL, token) }

// ProcessAlive reports whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// BoxPIDs returns the pids of `orgplane agent` processes whose environment
// names the workspace id (read from /proc/<pid>/environ), for checking what
// boxes run without trusting the control plane.
func BoxPIDs(workspaceID string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
			if i := bytes.IndexByte(data, 0); i >= 0 {
				return i + 1, data[:i], nil
			}
			if atEOF && len(data) > 0 {
				return len(data), data, nil
			}
			return 0, nil, nil
		})
		for sc.Scan() {
			if sc.Text() == "ORGPLANE_WORKSPACE_ID="+workspaceID {
				if ProcessAlive(pid) {
					out = append(out, pid)
				}
				break
			}
		}
		f.Close()
	}
	return out
}

// KillBoxes SIGKILLs every box of the given workspaces (test cleanup: boxes
// outlive the control plane by design).
func KillBoxes(ids ...string) {
	for _, id := range ids {
		for _, pid := range BoxPIDs(id) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// KillAllBoxesUnder SIGKILLs every process whose environment has
// ORGPLANE_URL=url: every box of one control plane.
func KillAllBoxesUnder(url string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte("\x00ORGPLANE_URL="+url+"\x00")) || bytes.HasPrefix(b, []byte("ORGPLANE_URL="+url+"\x00")) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Wait polls cond every 50ms until it holds; on timeout it fails with
// msg(), computed then, so that it can show the last state seen.
func Wait(t testing.TB, timeout time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %s", timeout, msg())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SecretValue returns a random value to plant in a test; tests compare it,
// never print it.
func SecretValue(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return "s3cr3t-" + hex.EncodeToString(b)
}
