// Package canvas drives the canvas in a real Chromium (through the DevTools
// protocol, with chromedp) against a real orgplane with real process
// boxes. The tests need a chromium binary: they skip with a message
// without one, unless ORGPLANE_TEST_REQUIRE_BROWSER=1 (CI) makes them
// mandatory.
package canvas

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

var bg = context.Background()

// chromium finds the browser, or skips (fails when it is required).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium found (apt-get install -y chromium); the canvas browser tests need one"
	if os.Getenv("ORGPLANE_TEST_REQUIRE_BROWSER") == "1" {
		t.Fatal(msg + " and ORGPLANE_TEST_REQUIRE_BROWSER=1")
	}
	t.Skip(msg)
	return ""
}

// orgServer is `orgplane up` in a temp dir, with clients of its owner and
// admin tokens.
type orgServer struct {
	t          *testing.T
	url        string
	dir        string
	proc       *e2etest.Proc
	owner      *client.Client
	admin      *client.Client
	adminToken string
	platformID string
}

func startOrg(t *testing.T) *orgServer {
	t.Helper()
	s := &orgServer{t: t, dir: t.TempDir()}
	addr := e2etest.FreeAddr(t)
	s.url = "http://" + addr
	t.Cleanup(func() {
		if s.proc != nil {
			s.proc.Stop()
		}
		e2etest.KillAllBoxesUnder(s.url)
	})
	s.proc = e2etest.Start(t, s.dir, s.url, nil, "up", "--addr", addr)
	e2etest.Eventually(t, 30*time.Second, func() bool { return strings.Contains(s.proc.Output(), "orgplane is serving on") },
		"orgplane up did not finish starting:\n%s", s.proc.Output())
	s.adminToken = e2etest.AdminToken(t, s.dir)
	s.admin = client.New(s.url, s.adminToken)
	b, err := os.ReadFile(filepath.Join(s.dir, "orgplane-data", "owner.token"))
	require.NoError(t, err)
	s.owner = client.New(s.url, strings.TrimSpace(string(b)))
	list, err := s.admin.ListWorkspaces(bg)
	require.NoError(t, err)
	for _, w := range list {
		if w.Kind == "platform" {
			s.platformID = w.ID
		}
	}
	require.NotEmpty(t, s.platformID)
	return s
}

// loginLink mints a one-time sign-in link for a person, as `orgplane users
// login-link NAME` does.
func (s *orgServer) loginLink(person string) string {
	s.t.Helper()
	l, err := s.owner.CreateLoginLink(bg, person)
	require.NoError(s.t, err)
	return l.URL
}

// waitRunning waits until the workspace runs generation gen or later
// with its current env.
func (s *orgServer) waitRunning(id string, gen int64) client.Workspace {
	s.t.Helper()
	return s.waitUp(id, gen, true)
}

// waitUp waits until the workspace runs generation gen or later; fresh:
// with its current env too.
func (s *orgServer) waitUp(id string, gen int64, fresh bool) client.Workspace {
	s.t.Helper()
	var w client.Workspace
	e2etest.Wait(s.t, 90*time.Second, func() bool {
		var err error
		w, err = s.admin.GetWorkspace(bg, id)
		return err == nil && w.Status == "running" && w.Generation >= gen && (!fresh || !w.Stale)
	}, func() string { return fmt.Sprintf("workspace %s: %+v", id, w) })
	return w
}

// call makes a raw API call with a token (for an agent's calls whose
// answers the tests read as they come: 201, 202 {approval}).
func (s *orgServer) call(token, method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(s.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// browser is one headless Chromium for a test.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelA := chromedp.NewExecAllocator(bg, opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return &browser{t: t, ctx: ctx}
}

// tab is a page of its own browser context (its own cookies), whose
// console errors, uncaught exceptions and CSP violations are collected
// through the DevTools protocol.
type tab struct {
	t      *testing.T
	ctx    context.Context
	mu     sync.Mutex
	errs   []string
	all    []string // every console message, for a failure's report
	ignore func(chromedp.ConsoleMessage) bool
}

// reportCSP runs before any script of every page: a violation of the
// Content-Security-Policy becomes a console error the test sees, whatever
// the browser's own report says.
const reportCSP = `document.addEventListener('securitypolicyviolation', (e) =>
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI + ' at ' + e.sourceFile + ':' + e.lineNumber));`

// tab opens a tab in a browser context of its own: a person of their own.
func (b *browser) tab() *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	return newTab(b.t, ctx)
}

// sibling opens another tab of the same person (the same cookies).
func (tb *tab) sibling() *tab {
	tb.t.Helper()
	ctx, cancel := chromedp.NewContext(tb.ctx)
	tb.t.Cleanup(cancel)
	return newTab(tb.t, ctx)
}

func newTab(tt *testing.T, ctx context.Context) *tab {
	tt.Helper()
	b := struct{ t *testing.T }{tt}
	tb := &tab{t: b.t, ctx: ctx}
	messages := chromedp.Console(ctx)
	require.NoError(b.t, chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: reportCSP})
		return err
	})))
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.all = append(tb.all, m.String())
			tb.mu.Unlock()
			if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException && !strings.Contains(m.Text, "Content Security Policy") {
				continue
			}
			tb.mu.Lock()
			if tb.ignore == nil || !tb.ignore(m) {
				tb.errs = append(tb.errs, fmt.Sprintf("%s (%s:%d)", m.String(), m.URL, m.Line+1))
			}
			tb.mu.Unlock()
		}
	}()
	return tb
}

// do runs actions with a deadline of their own; the tab stays open.
func (tb *tab) do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		html, _ := chromedp.Run(tb.ctx, chromedp.OuterHTML("main"))
		tb.mu.Lock()
		console := strings.Join(tb.all, "\n")
		tb.mu.Unlock()
		tb.t.Fatalf("browser: %v\nconsole:\n%s\npage main:\n%s", err, console, html)
	}
}

// until waits for a JavaScript condition to hold (the browser re-checks
// it every frame).
func (tb *tab) until(timeout time.Duration, cond string) {
	tb.t.Helper()
	tb.do(timeout+5*time.Second, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingTimeout(timeout))(ctx, t)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", cond, err)
		}
		return nil
	}))
}

func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(tb.t, err, expr)
	return v
}

// open navigates and waits until the page's script has run (and, for a
// signed-in page, its event stream is open).
func (tb *tab) open(url string, live bool) {
	tb.t.Helper()
	tb.do(60*time.Second, chromedp.Navigate(url))
	if live {
		tb.until(60*time.Second, `document.body.dataset.ready === 'yes' && document.body.dataset.stream === 'open'`)
	}
}

// noErrors fails on any console error, exception or CSP violation so far.
func (tb *tab) noErrors() {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	require.Empty(tb.t, tb.errs, "console errors, exceptions or CSP violations")
}

// shot saves a screenshot of the whole page as docs/canvas/NAME.png when
// ORGPLANE_CANVAS_SCREENSHOTS names a directory (how the README's images
// are made), else in the test's temp dir.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	dir := os.Getenv("ORGPLANE_CANVAS_SCREENSHOTS")
	if dir == "" {
		dir = tb.t.TempDir()
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(tb.t, err)
	require.NoError(tb.t, os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644))
}

func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
