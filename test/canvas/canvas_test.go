package canvas

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

const wait = 90 * time.Second // a busy 2-core machine provisioning real boxes

// TestCanvas walks a person through the canvas, in order: each step starts
// from what the one before left.
func TestCanvas(t *testing.T) {
	br := newBrowser(t)
	s := startOrg(t)
	s.waitRunning(s.platformID, 1)
	// The org: two workspaces under the platform, one with a child, each a
	// real process box running the reference agent.
	mk := func(name, parent string) client.Workspace {
		w, err := s.admin.CreateWorkspace(bg, client.CreateWorkspace{Name: name, ParentID: parent})
		require.NoError(t, err)
		return w
	}
	research := mk("research", "")
	ops := mk("ops", "")
	child := mk("ops-batch", ops.ID)
	for _, w := range []client.Workspace{research, ops, child} {
		s.waitRunning(w.ID, 1)
	}

	p := br.tab() // the owner's browser
	link := s.loginLink("owner")

	t.Run("sign in with a link", func(t *testing.T) {
		p.t = t
		p.open(s.url+"/", false)
		p.until(wait, `document.body.textContent.includes('orgplane users login-link NAME')`)
		require.Zero(t, eval[int](p, `document.querySelectorAll('#tree, nav[aria-label=Main]').length`), "a visitor sees only the sign-in explanation")
		p.shot("signin")
		p.open(link, true)
		require.Equal(t, s.url+"/", eval[string](p, `location.href`), "the link signs in and lands on the org")
		require.Contains(t, eval[string](p, `document.getElementById('me').textContent`), "owner")
		p.noErrors()
	})

	t.Run("the tree", func(t *testing.T) {
		p.t = t
		p.until(wait, fmt.Sprintf(`document.querySelectorAll('#tree .node[data-status=running]').length === 4`))
		// The child sits under its parent, the workspaces under the platform.
		require.True(t, eval[bool](p, fmt.Sprintf(`!!document.querySelector('#ws-%s #ws-%s #ws-%s')`, s.platformID, ops.ID, child.ID)))
		row := eval[string](p, fmt.Sprintf(`document.querySelector('#ws-%s > .row').textContent`, research.ID))
		for _, want := range []string{"research", "running", "gen 1", "process"} {
			assert.Contains(t, row, want)
		}
		assert.Contains(t, eval[string](p, fmt.Sprintf(`document.querySelector('#ws-%s > .row').textContent`, s.platformID)), "platform")
		p.shot("org")
		p.noErrors()
	})

	t.Run("global secret: preview, confirm, stale badges appear and clear live", func(t *testing.T) {
		p.t = t
		// A second tab keeps the org open and records every workspace it
		// ever shows stale.
		org := p.sibling()
		org.t = t
		org.open(s.url+"/", true)
		eval[bool](org, `(() => { window.staleSeen = new Set();
		  const look = () => document.querySelectorAll('#tree .node[data-stale=true]').forEach((n) => window.staleSeen.add(n.id));
		  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true}); look(); return true })()`)

		p.open(s.url+"/secrets", true)
		value := e2etest.SecretValue(t)
		p.do(wait,
			chromedp.SendKeys("#secret-key", "OPENAI_API_KEY"),
			chromedp.SendKeys("#secret-value", value),
			chromedp.Click("#global-secret-form button[type=submit]"),
		)
		p.until(wait, `!!document.querySelector('#global-secret-form .preview .impact-head')`)
		head := eval[string](p, `document.querySelector('#global-secret-form .preview .impact-head').textContent`)
		assert.Contains(t, head, "would restart 3 of 4")
		counts := eval[string](p, `document.querySelector('#global-secret-form .preview table.counts').textContent`)
		assert.Contains(t, counts, "platform_root")
		assert.Contains(t, counts, "restart_queued")
		list := eval[string](p, `document.querySelector('#global-secret-form .preview table.decisions').textContent`)
		for _, n := range []string{"platform", "research", "ops", "ops-batch"} {
			assert.Contains(t, list, n)
		}
		// The preview changed nothing.
		secrets, err := s.admin.ListSecrets(bg, "")
		require.NoError(t, err)
		assert.Empty(t, secrets, "a preview writes nothing")
		assert.NotContains(t, eval[string](p, `document.documentElement.outerHTML`), value, "the value is never echoed")
		p.shot("secrets-preview")

		require.Contains(t, eval[string](p, `document.querySelector('#global-secret-form button[type=submit]').textContent`), "Confirm")
		p.do(wait, chromedp.Click("#global-secret-form button[type=submit]"))
		p.until(wait, `!!document.querySelector('#global-secret-form .impact-done')`)
		p.until(wait, `document.querySelector('#global-secrets').textContent.includes('OPENAI_API_KEY')`)
		assert.Empty(t, eval[string](p, `document.getElementById('secret-value').value`), "the value field is emptied")
		assert.NotContains(t, eval[string](p, `document.documentElement.outerHTML`), value)

		// Live, without a reload: each restarted workspace was shown stale,
		// then fresh on generation 2; the platform stays stale (never
		// restarted by a secret change).
		for _, w := range []client.Workspace{research, ops, child} {
			org.until(wait, fmt.Sprintf(`window.staleSeen.has('ws-%s')`, w.ID))
			org.until(wait, fmt.Sprintf(`(() => { const n = document.getElementById('ws-%s');
			  return n && n.dataset.stale === 'false' && n.dataset.status === 'running' && n.querySelector('.row').textContent.includes('gen 2') })()`, w.ID))
		}
		org.until(wait, fmt.Sprintf(`document.getElementById('ws-%s').dataset.stale === 'true'`, s.platformID))
		require.True(t, eval[bool](org, `!!window.staleSeen`), "the org tab was never reloaded")
		org.shot("org-stale-platform")
		org.noErrors()
		p.noErrors()
	})

	t.Run("restart a workspace from its page", func(t *testing.T) {
		p.t = t
		before, err := s.admin.GetWorkspace(bg, research.ID)
		require.NoError(t, err)
		p.open(s.url+"/workspaces/"+research.ID, true)
		p.shot("workspace")
		p.do(wait, chromedp.SendKeys("#restart-reason", "from the canvas"), chromedp.Click("#restart-btn"))
		p.until(wait, `(() => { const r = document.querySelector('#restarts tr.job');
		  return r && r.dataset.state === 'succeeded' && r.textContent.includes('explicit') })()`)
		p.until(wait, `document.querySelector('#facts').textContent.includes('running')`)
		w, err := s.admin.GetWorkspace(bg, research.ID)
		require.NoError(t, err)
		assert.Equal(t, before.Generation+1, w.Generation, "one more generation")
		p.noErrors()
	})

	t.Run("platform restart asks for its name, and cancel changes nothing", func(t *testing.T) {
		p.t = t
		before, err := s.admin.GetWorkspace(bg, s.platformID)
		require.NoError(t, err)
		p.open(s.url+"/workspaces/"+s.platformID, true)
		p.do(wait, chromedp.Click("#restart-open"), chromedp.WaitVisible("#restart-dialog"))
		assert.Contains(t, eval[string](p, `document.getElementById('restart-dialog').textContent`), "will be interrupted")
		// A wrong name is refused in the page.
		p.do(wait, chromedp.SendKeys("#confirm-name", "platfor"), chromedp.Click("#restart-dialog button[type=submit]"))
		p.until(wait, `document.querySelector('#restart-dialog .form-error').textContent.includes('type platform exactly')`)
		p.shot("platform-restart-dialog")
		p.do(wait, chromedp.Click("#restart-dialog [data-close-dialog]"))
		p.until(wait, `!document.getElementById('restart-dialog').open`)
		jobs, err := s.admin.ListRestarts(bg, s.platformID)
		require.NoError(t, err)
		for _, j := range jobs {
			assert.Equal(t, "skipped", j.State, "no restart of the platform (a secret change's decision is recorded as skipped): %+v", j)
		}
		after, err := s.admin.GetWorkspace(bg, s.platformID)
		require.NoError(t, err)
		assert.Equal(t, before.Generation, after.Generation)
		p.noErrors()
	})

	// The concierge's kind of token: an admin token bound to the platform.
	code, minted := s.call(s.adminToken, "POST", "/v1/tokens", map[string]any{"kind": "admin", "name": "concierge", "acting_workspace_id": s.platformID})
	require.Equal(t, 201, code, "%v", minted)
	agent := minted["secret"].(string)

	t.Run("approve an agent's approval and see it executed", func(t *testing.T) {
		p.t = t
		p.open(s.url+"/approvals", true)
		// The agent asks to protect ops: the policy holds it for people.
		code, body := s.call(agent, "PATCH", "/v1/workspaces/"+ops.ID, map[string]any{"protected": true})
		require.Equal(t, 202, code, "%v", body)
		id := body["approval"].(map[string]any)["id"].(string)
		// It appears live, and the count in the navigation with it.
		p.until(wait, fmt.Sprintf(`!!document.getElementById('approval-%s')`, id))
		p.until(wait, `document.getElementById('nav-approvals').textContent.trim() === '1'`)
		card := eval[string](p, fmt.Sprintf(`document.getElementById('approval-%s').textContent`, id))
		assert.Contains(t, card, "workspace.update")
		assert.Contains(t, card, "of workspace platform")
		assert.Contains(t, card, "concierge", "the token by its name")
		p.shot("approvals")
		p.do(wait, chromedp.SendKeys("#note-"+id, "fine: ops is critical"),
			chromedp.Click(fmt.Sprintf(`#approval-%s button[value=approve]`, id)))
		p.until(wait, fmt.Sprintf(`(() => { const r = document.querySelector('#approvals-recent #approval-%s');
		  return r && r.dataset.state === 'succeeded' })()`, id))
		p.until(wait, `document.getElementById('nav-approvals').textContent.trim() === '0'`)
		w, err := s.admin.GetWorkspace(bg, ops.ID)
		require.NoError(t, err)
		assert.True(t, w.Protected, "the control plane carried the action out")
		p.open(s.url+"/", true)
		p.until(wait, fmt.Sprintf(`document.querySelector('#ws-%s > .row').textContent.includes('protected')`, ops.ID))
		p.noErrors()
	})

	t.Run("answer a secret request", func(t *testing.T) {
		p.t = t
		p.open(s.url+"/requests", true)
		code, body := s.call(agent, "POST", "/v1/requests", map[string]any{"title": "the database password", "ask": "secret", "key": "DB_PASSWORD", "workspace_id": research.ID})
		require.Equal(t, 201, code, "%v", body)
		id := body["id"].(string)
		p.until(wait, fmt.Sprintf(`!!document.getElementById('request-%s')`, id))
		p.until(wait, `document.getElementById('nav-requests').textContent.trim() === '1'`)
		p.shot("requests")
		value := e2etest.SecretValue(t)
		p.do(wait, chromedp.SendKeys("#value-"+id, value), chromedp.Click(fmt.Sprintf(`#request-%s form.answer button[type=submit]`, id)))
		p.until(wait, fmt.Sprintf(`(() => { const r = document.querySelector('#requests-recent #request-%s');
		  return r && r.dataset.state === 'answered' })()`, id))
		assert.NotContains(t, eval[string](p, `document.documentElement.outerHTML`), value, "the value is never shown")
		secrets, err := s.admin.ListSecrets(bg, research.ID)
		require.NoError(t, err)
		var keys []string
		for _, x := range secrets {
			keys = append(keys, x.Key)
		}
		assert.Contains(t, keys, "DB_PASSWORD", "the answer was written as the workspace's secret")
		p.noErrors()
	})

	t.Run("every page, no errors", func(t *testing.T) {
		p.t = t
		for _, pg := range []string{"audit", "tokens", "people", "policy"} {
			p.open(s.url+"/"+pg, true)
			p.shot(pg)
		}
		p.open(s.url+"/audit?action=secret.set", true)
		assert.Contains(t, eval[string](p, `document.getElementById('audit').textContent`), "secret.set")
		assert.NotContains(t, eval[string](p, `document.getElementById('audit').textContent`), "workspace.create")
		// Phone width: the tree and the navigation still fit.
		p.do(wait, chromedp.EmulateViewport(390, 844), chromedp.Navigate(s.url+"/"))
		p.until(wait, `document.body.dataset.stream === 'open'`)
		assert.LessOrEqual(t, eval[int](p, `document.documentElement.scrollWidth`), 390, "no sideways scrolling at phone width")
		p.shot("org-phone")
		p.do(wait, chromedp.EmulateViewport(1280, 800))
		p.noErrors()
	})

	t.Run("a viewer sees no write controls", func(t *testing.T) {
		_, err := s.owner.CreateUser(bg, client.CreateUser{Name: "vera", Role: "viewer"})
		require.NoError(t, err)
		v := br.tab()
		v.t = t
		v.open(s.loginLink("vera"), true)
		for _, pg := range []string{"/", "/secrets", "/workspaces/" + research.ID, "/workspaces/" + s.platformID, "/approvals", "/requests", "/audit", "/tokens", "/policy"} {
			v.open(s.url+pg, true)
			n := eval[int](v, `document.querySelectorAll('form[data-api], dialog, [data-open-dialog], input[type=password]').length`)
			assert.Zero(t, n, "%s: a viewer gets no write control", pg)
		}
		v.open(s.url+"/workspaces/"+research.ID, true)
		v.shot("workspace-viewer")
		v.noErrors()
	})

	t.Run("a second use of a sign-in link is refused", func(t *testing.T) {
		x := br.tab()
		x.t = t
		// The refusal is an HTTP error page: the browser logs its status.
		x.ignore = func(m chromedp.ConsoleMessage) bool {
			return m.Source == "network" && strings.Contains(m.URL, "/login?")
		}
		x.open(link, false)
		x.until(wait, `document.body.textContent.includes('login_link_used')`)
		x.open(s.url+"/", false)
		x.until(wait, `document.body.textContent.includes('orgplane users login-link NAME')`)
		require.Zero(t, eval[int](x, `document.querySelectorAll('#tree').length`), "no session")
		x.noErrors()
	})

	t.Run("banner while the platform is down, live", func(t *testing.T) {
		p.t = t
		before := s.waitUp(s.platformID, 1, false) // stale since the secret change
		p.open(s.url+"/", true)
		require.Empty(t, eval[string](p, `document.getElementById('banner').textContent.trim()`), "no banner while it runs")
		eval[bool](p, `(() => { window.bannerSeen = '';
		  new MutationObserver(() => { const t = document.getElementById('banner').textContent;
		    if (t.includes('The platform workspace')) window.bannerSeen = t; })
		  .observe(document.getElementById('banner'), {subtree: true, childList: true, characterData: true}); return true })()`)
		pids := e2etest.BoxPIDs(s.platformID)
		require.NotEmpty(t, pids)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		// The banner says so (with how long) while the supervisor brings it
		// back, and goes once it runs again.
		p.until(wait, `window.bannerSeen !== ''`)
		seen := eval[string](p, `window.bannerSeen`)
		assert.Regexp(t, `is (failed|provisioning|degraded)`, seen)
		assert.Contains(t, seen, "for ")
		s.waitUp(s.platformID, before.Generation+1, true) // a new box gets the current env
		p.until(wait, `document.getElementById('banner').textContent.trim() === ''`)
		p.noErrors()
	})
}
