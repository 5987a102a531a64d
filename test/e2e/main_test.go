// Package e2e drives the real orgplane binary end to end: `orgplane up` in
// temp dirs, the HTTP API and the CLI against it, and real boxes (processes
// and Docker containers) under it. Boxes outlive their control plane by
// design, so every test removes what it caused, and TestMain fails the run
// if anything is left.
package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"go.uber.org/goleak"

	"github.com/orgplane/orgplane/internal/e2etest"
)

// registry remembers every control plane (by URL) and org this test binary
// started, so that TestMain can check that nothing of theirs is left.
var registry struct {
	mu   sync.Mutex
	urls []string
	orgs []string // orgs of control planes with the docker runtime on
}

func registerURL(url string) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	registry.urls = append(registry.urls, url)
}

func registerOrg(orgID string) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if !slices.Contains(registry.orgs, orgID) {
		registry.orgs = append(registry.orgs, orgID)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	// These tests spend their time waiting on real processes, containers
	// and timeouts, not on the CPU: GOMAXPROCS (2 here) parallel tests
	// would serialize the waits. An explicit -test.parallel still wins.
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "8")
	}
	code := m.Run()
	closeIdle()
	if err := goleak.Find(); err != nil && code == 0 {
		fmt.Fprintf(os.Stderr, "FAIL: goroutines left behind: %v\n", err)
		code = 1
	}
	if leaks := sweepAll(); leaks != "" {
		fmt.Fprintf(os.Stderr, "FAIL: boxes left behind by the e2e tests (now removed):\n%s", leaks)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// sweepAll finds, reports and removes every box process and container of
// the control planes this run started.
func sweepAll() string {
	registry.mu.Lock()
	urls, orgs := append([]string(nil), registry.urls...), append([]string(nil), registry.orgs...)
	registry.mu.Unlock()
	var out strings.Builder
	for _, url := range urls {
		// A box killed by a test's cleanup may take a moment to disappear.
		var pids []int
		for i := 0; i < 40; i++ {
			if pids = boxProcsUnder(url); len(pids) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(pids) > 0 {
			fmt.Fprintf(&out, "  processes of %s: %v\n", url, pids)
			e2etest.KillAllBoxesUnder(url)
		}
	}
	if len(orgs) > 0 {
		c, err := client.New(client.FromEnv)
		if err != nil {
			fmt.Fprintf(&out, "  cannot check containers: %v\n", err)
			return out.String()
		}
		defer c.Close()
		for _, org := range orgs {
			ids, err := containersOf(context.Background(), c, "orgplane.org="+org)
			if err != nil {
				fmt.Fprintf(&out, "  cannot list containers of org %s: %v\n", org, err)
				continue
			}
			if len(ids) > 0 {
				fmt.Fprintf(&out, "  containers of org %s: %v\n", org, ids)
				removeContainers(c, ids)
			}
		}
	}
	return out.String()
}

// boxProcsUnder returns the live (non-zombie) processes whose environment
// has ORGPLANE_URL=url: the boxes of one control plane, processes and
// containers alike (this machine sees containers' processes).
func boxProcsUnder(url string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		if (bytes.HasPrefix(b, []byte("ORGPLANE_URL="+url+"\x00")) || bytes.Contains(b, []byte("\x00ORGPLANE_URL="+url+"\x00"))) &&
			e2etest.ProcessAlive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// containersOf lists the ids of the orgplane-managed containers (running or
// not) that carry every given label (key=value).
func containersOf(ctx context.Context, c *client.Client, labels ...string) ([]string, error) {
	f := make(client.Filters).Add("label", "orgplane.managed=true")
	for _, l := range labels {
		f.Add("label", l)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(res.Items))
	for _, it := range res.Items {
		ids = append(ids, it.ID)
	}
	return ids, nil
}

func removeContainers(c *client.Client, ids []string) {
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, _ = c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		cancel()
	}
}

// closeIdle drops the keep-alive connections of the API clients (they use
// the default transport), so servers stop promptly.
func closeIdle() {
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// dockerClient returns a client of the machine's engine, its API version
// negotiated on first use.
func dockerClient() (*client.Client, error) {
	return client.New(client.FromEnv)
}
