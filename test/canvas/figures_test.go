package canvas

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// TestOrgPage1000Figures measures, in the browser, the org page of an org
// of 1,000 workspaces: its first render (navigation to first contentful
// paint), and how long a box's death takes to show in the open tree (the
// kill of its process to the node's new status). It logs the figures that
// docs/benchmarks.md quotes, and checks only that they were measured.
func TestOrgPage1000Figures(t *testing.T) {
	br := newBrowser(t)
	s := startOrg(t)
	s.waitRunning(s.platformID, 1)
	no := false
	for i := range 10 {
		team, err := s.admin.CreateWorkspace(bg, client.CreateWorkspace{Name: fmt.Sprintf("team-%02d", i), Start: &no})
		require.NoError(t, err)
		for j := range 99 {
			if i == 0 && j == 0 {
				continue // the probe below is the thousandth
			}
			_, err := s.admin.CreateWorkspace(bg, client.CreateWorkspace{Name: fmt.Sprintf("ws-%02d-%02d", i, j), ParentID: team.ID, Start: &no})
			require.NoError(t, err)
		}
	}
	probe, err := s.admin.CreateWorkspace(bg, client.CreateWorkspace{Name: "probe"})
	require.NoError(t, err)
	s.waitRunning(probe.ID, 1)

	p := br.tab()
	p.open(s.loginLink("owner"), true)
	var fcp, load []float64
	for range 5 {
		p.open(s.url+"/", true)
		require.Equal(t, 1001, eval[int](p, `document.querySelectorAll('#tree .node').length`))
		// The paint entry is recorded once the browser has painted, which
		// may come after the page's script has run.
		p.until(wait, `performance.getEntriesByName('first-contentful-paint').length > 0`)
		fcp = append(fcp, eval[float64](p, `performance.getEntriesByName('first-contentful-paint')[0].startTime`))
		load = append(load, eval[float64](p, `performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd`))
	}
	t.Logf("org page, 1,000 workspaces, first contentful paint: median %.0f ms %v; DOMContentLoaded: median %.0f ms %v",
		median(fcp), fcp, median(load), load)

	// A box dies; the open tree shows it.
	var lag []float64
	for gen := int64(1); gen <= 3; gen++ {
		w := s.waitRunning(probe.ID, gen)
		p.until(wait, fmt.Sprintf(`document.getElementById('ws-%s').dataset.status === 'running'`, probe.ID))
		eval[bool](p, fmt.Sprintf(`(() => { window.changedAt = 0; const id = 'ws-%s';
		  new MutationObserver((_, o) => { const n = document.getElementById(id);
		    if (n && n.dataset.status !== 'running' && !window.changedAt) { window.changedAt = Date.now(); o.disconnect(); } })
		  .observe(document.getElementById('tree'), {subtree: true, childList: true, attributes: true}); return true })()`, probe.ID))
		pids := e2etest.BoxPIDs(probe.ID)
		require.NotEmpty(t, pids)
		killed := time.Now().UnixMilli()
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		p.until(wait, `window.changedAt > 0`)
		lag = append(lag, float64(eval[int64](p, `window.changedAt`)-killed))
		_ = w
	}
	t.Logf("a box's death to the tree showing it, 1,000 workspaces on the page: median %.0f ms %v", median(lag), lag)
	p.noErrors()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
