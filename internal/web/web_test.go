package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/httpapi"
	"github.com/orgplane/orgplane/internal/testenv"
	"github.com/orgplane/orgplane/internal/web"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bg = context.Background()

// canvasEnv is an in-process control plane whose HTTP face carries the
// canvas, as the real server's does.
type canvasEnv struct {
	*testenv.Env
	url string
}

func newCanvasEnv(t testing.TB) *canvasEnv {
	t.Helper()
	env := testenv.New(t, testenv.Options{})
	c := web.New(env.Service, nil)
	h := httpapi.New(env.Service, httpapi.Options{Extra: func(r chi.Router, _ func(http.Handler) http.Handler) { c.Mount(r) }})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	return &canvasEnv{Env: env, url: srv.URL}
}

// browser signs a person in with a fresh link and returns an HTTP client
// holding the session cookie.
func (e *canvasEnv) browser(t testing.TB, owner *client.Client, person string) *http.Client {
	t.Helper()
	link, err := owner.CreateLoginLink(bg, person)
	require.NoError(t, err)
	u, err := url.Parse(link.URL)
	require.NoError(t, err)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(e.url + "/login?" + u.RawQuery)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, "signed in and redirected to the org page")
	return c
}

func get(t testing.TB, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

var pages = []string{"/", "/secrets", "/approvals", "/requests", "/audit", "/tokens", "/people", "/policy"}

var (
	inlineScript = regexp.MustCompile(`<script(?:\s[^>]*)?>`)
	inlineStyle  = regexp.MustCompile(`(?i)\sstyle\s*=|<style|\son[a-z]+\s*=`)
)

// checkPage checks what every canvas page must be: HTML under the strict
// CSP, with no inline script, style or handler that the CSP would block.
func checkPage(t *testing.T, resp *http.Response, body string) {
	t.Helper()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, web.CSP, resp.Header.Get("Content-Security-Policy"))
	assert.Contains(t, web.CSP, "default-src 'self'")
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	for _, tag := range inlineScript.FindAllString(body, -1) {
		assert.Contains(t, tag, `src="/static/`, "only scripts of our own, by URL")
	}
	assert.NotRegexp(t, inlineStyle, body, "no inline style or event handler attribute")
	assert.NotContains(t, body, "http://", "no external resource (and no link elsewhere)")
}

func TestSignedOutSeesOnlySignIn(t *testing.T) {
	e := newCanvasEnv(t)
	for _, p := range append(pages, "/workspaces/"+e.Org.Platform.ID) {
		resp, body := get(t, http.DefaultClient, e.url+p)
		checkPage(t, resp, body)
		assert.Contains(t, body, "orgplane users login-link NAME", p)
		assert.NotContains(t, body, "platform", "%s: nothing of the org", p)
		assert.NotContains(t, body, "<script", "%s: no script for a visitor", p)
	}
	// A dead cookie is a visitor too.
	req, _ := http.NewRequest("GET", e.url+"/", nil)
	req.AddCookie(&http.Cookie{Name: "orgplane_session", Value: "op_session_x_y"})
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(b), "Sign in to orgplane")
}

func TestPagesRenderForOwnerAndViewer(t *testing.T) {
	e := newCanvasEnv(t)
	w, err := e.Admin.CreateWorkspace(bg, client.CreateWorkspace{Name: "research"})
	require.NoError(t, err)
	_, err = e.Owner.CreateUser(bg, client.CreateUser{Name: "vera", Role: "viewer"})
	require.NoError(t, err)
	owner := e.browser(t, e.Owner, "owner")
	viewer := e.browser(t, e.Owner, "vera")
	all := append(pages, "/workspaces/"+w.ID, "/workspaces/"+e.Org.Platform.ID, "/audit?action=workspace.create&outcome=ok")
	for _, p := range all {
		t.Run("owner "+p, func(t *testing.T) {
			resp, body := get(t, owner, e.url+p)
			checkPage(t, resp, body)
			assert.NotContains(t, body, `class="error"`, "the page rendered without an error")
			assert.Contains(t, body, `<meta name="orgplane-csrf"`)
			assert.Contains(t, body, `src="/static/app.js"`)
		})
	}
	for _, p := range []string{"/secrets", "/workspaces/" + w.ID, "/workspaces/" + e.Org.Platform.ID, "/tokens", "/policy", "/people"} {
		_, body := get(t, owner, e.url+p)
		assert.Contains(t, body, "data-api=", "%s: the owner has write controls", p)
	}
	for _, p := range all {
		t.Run("viewer "+p, func(t *testing.T) {
			resp, body := get(t, viewer, e.url+p)
			checkPage(t, resp, body)
			assert.NotContains(t, body, "data-api=", "a viewer gets no write control")
			assert.NotContains(t, body, "<dialog", "a viewer gets no write control")
		})
	}
	// The tree shows the workspace under the platform.
	_, body := get(t, owner, e.url+"/")
	assert.Contains(t, body, fmt.Sprintf(`id="ws-%s"`, w.ID))
	assert.Regexp(t, `(?s)id="ws-`+e.Org.Platform.ID+`".*id="ws-`+w.ID+`"`, body)
	// The platform's restart asks for its name to be typed.
	_, body = get(t, owner, e.url+"/workspaces/"+e.Org.Platform.ID)
	assert.Contains(t, body, `data-confirm-name="platform"`)
	assert.Contains(t, body, "will be interrupted")
}

func TestStaticAssets(t *testing.T) {
	e := newCanvasEnv(t)
	for path, ctype := range map[string]string{"/static/app.js": "text/javascript", "/static/app.css": "text/css", "/static/favicon.svg": "image/svg+xml"} {
		resp, body := get(t, http.DefaultClient, e.url+path)
		assert.Equal(t, 200, resp.StatusCode, path)
		assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), ctype), "%s: %s", path, resp.Header.Get("Content-Type"))
		body = strings.ReplaceAll(body, `xmlns="http://www.w3.org/2000/svg"`, "") // a name, not a fetch
		assert.NotContains(t, body, "http://", "%s: nothing external", path)
		assert.NotContains(t, body, "https://", "%s: nothing external", path)
	}
}

// BenchmarkOrgPage1000 is the server's time to answer the org page of an
// org of 1,000 workspaces (a tree: 10 under the platform, 99 under each),
// over loopback HTTP with a session cookie: authentication, the service
// calls, the template, the transfer.
func BenchmarkOrgPage1000(b *testing.B) {
	e := newCanvasEnv(b)
	no := false
	for i := range 10 {
		team, err := e.Admin.CreateWorkspace(bg, client.CreateWorkspace{Name: fmt.Sprintf("team-%02d", i), Start: &no})
		require.NoError(b, err)
		for j := range 99 {
			_, err := e.Admin.CreateWorkspace(bg, client.CreateWorkspace{Name: fmt.Sprintf("ws-%02d-%02d", i, j), ParentID: team.ID, Start: &no})
			require.NoError(b, err)
		}
	}
	c := e.browser(b, e.Owner, "owner")
	resp, body := get(b, c, e.url+"/")
	require.Equal(b, 200, resp.StatusCode)
	require.Equal(b, 1001, strings.Count(body, `class="node"`), "the platform and 1,000 workspaces")
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Get(e.url + "/")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.ReportMetric(float64(len(body))/1024, "KiB/page")
}
