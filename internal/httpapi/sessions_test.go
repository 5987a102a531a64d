package httpapi_test

import (
	"bufio"
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// Canvas sign-in (issue 10): one-time links minted by people, GET /login,
// the session cookie on the API, CSRF and Origin checks, lifetimes.

// session is a signed-in browser: its cookie and its CSRF token.
type session struct {
	cookie, csrf string
}

// header is what the canvas sends: the cookie, and for writes its Origin
// and CSRF token. origin "" sends no Origin header.
func (s session) header(origin string) http.Header {
	h := http.Header{"Cookie": {"orgplane_session=" + s.cookie}}
	if origin != "" {
		h.Set("Origin", origin)
	}
	if s.csrf != "" {
		h.Set("X-CSRF-Token", s.csrf)
	}
	return h
}

// noRedirect is a browser that shows a redirect instead of following it.
func noRedirect() *http.Client {
	tr := &http.Transport{}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// openLink opens a sign-in link like a browser, without following the
// redirect.
func openLink(t testing.TB, u string) (*http.Response, string) {
	t.Helper()
	hc := noRedirect()
	defer hc.Transport.(*http.Transport).CloseIdleConnections()
	resp, err := hc.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return resp, b.String()
}

// mintLink mints a sign-in link for ref with the token.
func mintLink(t testing.TB, e *testenv.Env, token, ref string) client.LoginLink {
	t.Helper()
	l, err := e.Client(token).CreateLoginLink(context.Background(), ref)
	require.NoError(t, err)
	return l
}

// signIn mints a link for ref with the token, opens it, and reads the
// session's CSRF token.
func signIn(t testing.TB, e *testenv.Env, a *api, token, ref string) session {
	t.Helper()
	resp, body := openLink(t, mintLink(t, e, token, ref).URL)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	var s session
	for _, c := range resp.Cookies() {
		if c.Name == "orgplane_session" {
			s.cookie = c.Value
		}
	}
	require.NotEmpty(t, s.cookie)
	r := a.send(t, call{Method: "GET", Path: "/v1/session", Header: s.header("")})
	require.Equal(t, 200, r.Status, r.String())
	s.csrf = decodeJSON[client.Session](t, r).CSRFToken
	require.NotEmpty(t, s.csrf)
	return s
}

// countRows counts a table's rows straight in the store's database.
func countRows(t testing.TB, e *testenv.Env, table string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+strings.TrimPrefix(e.DBURL, "sqlite:")+"?_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+table).Scan(&n))
	return n
}

// flip changes one character in the middle of a credential's secret.
func flip(s string) string {
	i := len(s) - 10
	c := byte('b')
	if s[i] == c {
		c = 'c'
	}
	return s[:i] + string(c) + s[i+1:]
}

func auditActions(t testing.TB, e *testenv.Env) []client.AuditEntry {
	t.Helper()
	page, err := e.Admin.ListAudit(context.Background(), "", 1000, 0)
	require.NoError(t, err)
	return page.Entries
}

func TestSignInEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	ctx := context.Background()
	owner, err := e.Owner.Whoami(ctx)
	require.NoError(t, err)

	before := time.Now()
	r := a.send(t, call{Method: "POST", Path: "/v1/users/owner/login-links", Token: e.OwnerToken})
	require.Equal(t, http.StatusCreated, r.Status, r.String())
	link := decodeJSON[client.LoginLink](t, r)
	require.True(t, strings.HasPrefix(link.URL, e.URL+"/login?code=op_login_"), link.URL)
	require.Equal(t, owner.UserID, link.UserID)
	require.WithinDuration(t, before.Add(10*time.Minute), link.ExpiresAt, time.Minute)

	resp, body := openLink(t, link.URL)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	require.Equal(t, "/", resp.Header.Get("Location"))
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "orgplane_session" {
			ck = c
		}
	}
	require.NotNil(t, ck, "Set-Cookie: %v", resp.Header.Values("Set-Cookie"))
	require.True(t, ck.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.Equal(t, "/", ck.Path)
	require.False(t, ck.Secure, "plain http: a Secure cookie would never come back")
	require.Equal(t, 7*24*3600, ck.MaxAge)
	require.True(t, strings.HasPrefix(ck.Value, "op_session_s"))
	s := session{cookie: ck.Value}

	// The API takes the cookie like the person's token.
	r = a.send(t, call{Method: "GET", Path: "/v1/whoami", Header: s.header("")})
	require.Equal(t, 200, r.Status, r.String())
	p := decodeJSON[client.Whoami](t, r).Principal
	require.Equal(t, "user", p.Kind)
	require.Equal(t, "owner", p.Role)
	require.Equal(t, owner.UserID, p.UserID)
	require.Equal(t, e.Org.Org.ID, p.OrgID)
	require.True(t, strings.HasPrefix(p.TokenID, "s"), "the session id names the caller: %s", p.TokenID)

	r = a.send(t, call{Method: "GET", Path: "/v1/session", Header: s.header("")})
	require.Equal(t, 200, r.Status, r.String())
	info := decodeJSON[client.Session](t, r)
	require.Equal(t, p.TokenID, info.ID)
	require.Equal(t, "owner", info.Name)
	require.Equal(t, "owner", info.Role)
	require.NotEmpty(t, info.CSRFToken)
	require.WithinDuration(t, time.Now().Add(7*24*time.Hour), info.ExpiresAt, time.Minute)
	require.WithinDuration(t, time.Now().Add(12*time.Hour), info.IdleExpiresAt, time.Minute)
	// A token has no session.
	r = a.send(t, call{Method: "GET", Path: "/v1/session", Token: e.OwnerToken})
	code, _ := requireErrorShape(t, r, 400)
	require.Equal(t, "no_session", code)

	// Used twice: refused, plainly, and nothing is created.
	sessions := countRows(t, e, "sessions")
	resp, body = openLink(t, link.URL)
	require.Equal(t, http.StatusGone, resp.StatusCode, body)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"))
	require.Contains(t, body, "login_link_used")
	require.Contains(t, body, "already used")
	require.Empty(t, resp.Cookies())
	require.Equal(t, sessions, countRows(t, e, "sessions"))

	// A code that is no link's, a mangled one, junk around it.
	code1 := strings.TrimPrefix(link.URL, e.URL+"/login?code=")
	for _, q := range []string{
		"code=" + flip(code1), "code=op_login_lnotalink_x", "", "code=",
		"code=" + code1 + "&code=" + code1, "code=" + code1 + "&next=/evil", "code=%zz",
	} {
		resp, body := openLink(t, e.URL+"/login?"+q)
		require.Equal(t, 400, resp.StatusCode, "%s: %s", q, body)
		require.Contains(t, body, "sign-in failed")
		require.Empty(t, resp.Cookies())
	}
	require.Equal(t, sessions, countRows(t, e, "sessions"))

	// Audited, without the code or the session's secret.
	var sawLink, sawCreate, sawRefused bool
	for _, en := range auditActions(t, e) {
		raw := string(en.Detail)
		require.NotContains(t, raw, code1)
		require.NotContains(t, raw, strings.TrimPrefix(s.cookie, "op_session_"+p.TokenID+"_"))
		switch {
		case en.Action == "user.login_link" && en.Outcome == "ok" && en.TargetID == owner.UserID:
			sawLink = true
		case en.Action == "session.create" && en.Outcome == "ok":
			sawCreate = true
			require.Equal(t, p.TokenID, en.TargetID)
			require.Equal(t, p.TokenID, en.TokenID)
			require.Equal(t, "user", en.PrincipalKind)
		case en.Action == "session.create" && en.Outcome == "error:login_link_used":
			sawRefused = true
		}
	}
	require.True(t, sawLink && sawCreate && sawRefused, "user.login_link %v, session.create %v, its refusal %v", sawLink, sawCreate, sawRefused)
}

// Who may mint a sign-in link: a person, never an agent nor automation; an
// admin not for an owner; a viewer never. A refusal stores nothing.
func TestLoginLinkMinters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	ctx := context.Background()
	people := map[string]string{} // role -> a token of a person with that role
	ids := map[string]string{}
	for _, role := range []string{"owner", "admin", "viewer"} {
		u, err := e.Owner.CreateUser(ctx, client.CreateUser{Name: "p-" + role, Role: role})
		require.NoError(t, err)
		people[role] = e.UserToken(e.Org.Org.ID, u.ID, "cli")
		ids[role] = u.ID
	}
	acting, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "concierge", ActingWorkspaceID: e.Org.Platform.ID})
	require.NoError(t, err)
	ws := mintWorkspaceToken(t, e.Admin, e.Org.Platform.ID)
	elsewhere, _ := e.NewOrg("elsewhere")
	gone, err := e.Owner.CreateUser(ctx, client.CreateUser{Name: "gone", Role: "viewer"})
	require.NoError(t, err)
	require.NoError(t, e.Owner.DeleteUser(ctx, gone.ID))
	adminSession := signIn(t, e, a, e.OwnerToken, "p-admin")

	cases := []struct {
		name   string
		token  string
		header http.Header
		target string
		status int
	}{
		{"owner for an owner", e.OwnerToken, nil, "p-owner", 201},
		{"owner for themselves", e.OwnerToken, nil, "owner", 201},
		{"owner for an admin, by id", e.OwnerToken, nil, ids["admin"], 201},
		{"admin for an admin", people["admin"], nil, "p-admin", 201},
		{"admin for a viewer", people["admin"], nil, "p-viewer", 201},
		{"admin session for a viewer", "", adminSession.header(e.URL), "p-viewer", 201},
		{"admin for an owner", people["admin"], nil, "p-owner", 403},
		{"admin session for an owner", "", adminSession.header(e.URL), "owner", 403},
		{"viewer for themselves", people["viewer"], nil, "p-viewer", 403},
		{"viewer for an owner", people["viewer"], nil, "owner", 403},
		{"plain admin token", e.AdminToken, nil, "p-viewer", 403},
		{"agent: management token", acting.Secret, nil, "p-viewer", 403},
		{"agent: workspace token", ws.Secret, nil, "p-viewer", 403},
		{"another org's admin token", elsewhere.Secret, nil, "p-viewer", 403},
		{"unknown person", e.OwnerToken, nil, "nobody", 404},
		{"removed person", e.OwnerToken, nil, gone.ID, 404},
		{"another org's person", e.OwnerToken, nil, elsewhere.Owner.ID, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			links := countRows(t, e, "login_links")
			r := a.send(t, call{Method: "POST", Path: "/v1/users/" + c.target + "/login-links", Token: c.token, Header: c.header})
			if c.status >= 400 {
				requireErrorShape(t, r, c.status)
				require.Equal(t, links, countRows(t, e, "login_links"), "a refusal stores nothing")
				return
			}
			require.Equal(t, c.status, r.Status, r.String())
			require.Equal(t, links+1, countRows(t, e, "login_links"))
		})
	}
	// A body is refused (the endpoint takes none).
	r := a.send(t, call{Method: "POST", Path: "/v1/users/owner/login-links", Token: e.OwnerToken, Body: []byte(`{"ttl":3600}`)})
	code, _ := requireErrorShape(t, r, 400)
	require.Equal(t, "unexpected_body", code)
}

// A link after its 10 minutes is refused, and creates nothing.
func TestLoginLinkExpires(t *testing.T) {
	t.Parallel()
	clock := &testenv.ShiftClock{}
	e := newEnv(t, testenv.Options{Clock: clock})
	early := mintLink(t, e, e.OwnerToken, "owner")
	late := mintLink(t, e, e.OwnerToken, "owner")
	clock.Advance(9*time.Minute + 50*time.Second)
	resp, body := openLink(t, early.URL)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "still valid: %s", body)
	clock.Advance(11 * time.Second)
	sessions := countRows(t, e, "sessions")
	resp, body = openLink(t, late.URL)
	require.Equal(t, http.StatusGone, resp.StatusCode, body)
	require.Contains(t, body, "login_link_expired")
	require.Empty(t, resp.Cookies())
	require.Equal(t, sessions, countRows(t, e, "sessions"))
}

// A state-changing call with a session cookie must come from the canvas:
// a same-origin Origin and the session's CSRF token. Anything else is 403
// and changes nothing; reads need neither.
func TestSessionCSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	ctx := context.Background()
	s := signIn(t, e, a, e.OwnerToken, "owner")
	other := signIn(t, e, a, e.OwnerToken, "owner")
	count := func() int {
		list, err := e.Admin.ListWorkspaces(ctx)
		require.NoError(t, err)
		return len(list)
	}
	with := func(mod func(http.Header)) http.Header {
		h := s.header(e.URL)
		mod(h)
		return h
	}
	cases := []struct {
		name   string
		header http.Header
		token  string
		status int
		code   string
	}{
		{"no Origin, no token", session{cookie: s.cookie}.header(""), "", 403, "cross_origin"},
		{"no Origin", s.header(""), "", 403, "cross_origin"},
		{"another site", s.header("https://evil.example"), "", 403, "cross_origin"},
		{"another port", s.header(strings.Replace(e.URL, "127.0.0.1:", "127.0.0.1:1", 1)), "", 403, "cross_origin"},
		{"https of our host", s.header(strings.Replace(e.URL, "http:", "https:", 1)), "", 403, "cross_origin"},
		{"Origin null", s.header("null"), "", 403, "cross_origin"},
		{"two Origins", with(func(h http.Header) { h.Add("Origin", e.URL) }), "", 403, "cross_origin"},
		{"no CSRF token", session{cookie: s.cookie}.header(e.URL), "", 403, "csrf_token_invalid"},
		{"wrong CSRF token", with(func(h http.Header) { h.Set("X-CSRF-Token", flip(s.csrf)) }), "", 403, "csrf_token_invalid"},
		{"another session's CSRF token", with(func(h http.Header) { h.Set("X-CSRF-Token", other.csrf) }), "", 403, "csrf_token_invalid"},
		{"two CSRF tokens", with(func(h http.Header) { h.Add("X-CSRF-Token", s.csrf) }), "", 403, "csrf_token_invalid"},
		{"cookie and Authorization", s.header(e.URL), e.OwnerToken, 400, "ambiguous_credentials"},
		{"two session cookies", with(func(h http.Header) { h.Add("Cookie", "orgplane_session="+other.cookie) }), "", 400, "ambiguous_credentials"},
		{"a forged cookie", session{cookie: flip(s.cookie), csrf: s.csrf}.header(e.URL), "", 401, "unauthorized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := count()
			r := a.send(t, call{Method: "POST", Path: "/v1/workspaces", Token: c.token, Header: c.header,
				Body: mustJSON(t, map[string]any{"name": uniq("csrf"), "start": false})})
			code, _ := requireErrorShape(t, r, c.status)
			require.Equal(t, c.code, code)
			require.Equal(t, before, count(), "nothing changed")
		})
	}
	// Reads need neither Origin nor token.
	r := a.send(t, call{Method: "GET", Path: "/v1/workspaces", Header: session{cookie: s.cookie}.header("")})
	require.Equal(t, 200, r.Status, r.String())
	// The canvas's own call works, with a default port written out too.
	before := count()
	r = a.send(t, call{Method: "POST", Path: "/v1/workspaces", Header: s.header(e.URL),
		Body: mustJSON(t, map[string]any{"name": uniq("canvas"), "start": false})})
	require.Equal(t, 201, r.Status, r.String())
	require.Equal(t, before+1, count())
	// The token callers are untouched by all this.
	_, err := e.Owner.CreateWorkspace(ctx, client.CreateWorkspace{Name: uniq("cli"), Start: new(false)})
	require.NoError(t, err)

	// The refusals are audited, under the session, with the code.
	codes := map[string]int{}
	for _, en := range auditActions(t, e) {
		if en.Action == "auth.csrf" {
			require.Equal(t, "denied", en.Outcome)
			require.True(t, strings.HasPrefix(en.TokenID, "s"))
			codes[string(en.Detail)]++
		}
	}
	require.Len(t, codes, 2, "cross_origin and csrf_token_invalid: %v", codes)
}

// Idle expiry, the absolute lifetime, sign-out, a removed person, and a
// viewer's session that reads but never writes.
func TestSessionLifetime(t *testing.T) {
	t.Parallel()
	clock := &testenv.ShiftClock{}
	e := newEnv(t, testenv.Options{Clock: clock})
	a := newAPI(t, e)
	ctx := context.Background()
	whoami := func(s session) result {
		return a.send(t, call{Method: "GET", Path: "/v1/whoami", Header: session{cookie: s.cookie}.header("")})
	}
	dead := func(s session, why string) {
		t.Helper()
		r := whoami(s)
		_, msg := requireErrorShape(t, r, 401)
		require.Contains(t, msg, why)
		require.Contains(t, strings.Join(r.Header.Values("Set-Cookie"), ";"), "orgplane_session=;", "the browser is told to forget it")
	}

	t.Run("idle", func(t *testing.T) {
		s := signIn(t, e, a, e.OwnerToken, "owner")
		clock.Advance(11*time.Hour + 58*time.Minute)
		require.Equal(t, 200, whoami(s).Status, "used within 12 h")
		clock.Advance(11*time.Hour + 58*time.Minute)
		require.Equal(t, 200, whoami(s).Status, "each use starts the 12 h again")
		clock.Advance(12*time.Hour + time.Minute)
		dead(s, "without use")
	})
	t.Run("lifetime", func(t *testing.T) {
		s := signIn(t, e, a, e.OwnerToken, "owner")
		for range 15 { // 15 x 11 h = 6 d 21 h
			clock.Advance(11 * time.Hour)
			require.Equal(t, 200, whoami(s).Status)
		}
		clock.Advance(3 * time.Hour)
		dead(s, "at most 7 days")
	})
	t.Run("sign-out", func(t *testing.T) {
		s := signIn(t, e, a, e.OwnerToken, "owner")
		r := a.send(t, call{Method: "DELETE", Path: "/v1/session", Header: session{cookie: s.cookie}.header(e.URL)})
		code, _ := requireErrorShape(t, r, 403)
		require.Equal(t, "csrf_token_invalid", code, "signing out is a write too")
		require.Equal(t, 200, whoami(s).Status)
		r = a.send(t, call{Method: "DELETE", Path: "/v1/session", Header: s.header(e.URL)})
		require.Equal(t, 204, r.Status, r.String())
		require.Contains(t, strings.Join(r.Header.Values("Set-Cookie"), ";"), "Max-Age=0")
		dead(s, "signed out")
		r = a.send(t, call{Method: "DELETE", Path: "/v1/session", Token: e.OwnerToken})
		code, _ = requireErrorShape(t, r, 400)
		require.Equal(t, "no_session", code, "a token has no session to end")
	})
	t.Run("removed person", func(t *testing.T) {
		_, err := e.Owner.CreateUser(ctx, client.CreateUser{Name: "leaver", Role: "admin"})
		require.NoError(t, err)
		s := signIn(t, e, a, e.OwnerToken, "leaver")
		require.Equal(t, 200, whoami(s).Status)
		require.NoError(t, e.Owner.DeleteUser(ctx, "leaver"))
		dead(s, "signed out") // removing a person ends their sessions
	})
	t.Run("viewer", func(t *testing.T) {
		_, err := e.Owner.CreateUser(ctx, client.CreateUser{Name: "watcher", Role: "viewer"})
		require.NoError(t, err)
		s := signIn(t, e, a, e.OwnerToken, "watcher")
		r := whoami(s)
		require.Equal(t, "viewer", decodeJSON[client.Whoami](t, r).Principal.Role)
		r = a.send(t, call{Method: "GET", Path: "/v1/workspaces", Header: s.header("")})
		require.Equal(t, 200, r.Status, r.String())
		r = a.send(t, call{Method: "PUT", Path: "/v1/secrets/VIEWER_WRITE", Header: s.header(e.URL), Body: []byte(`{"value":"v"}`)})
		_, msg := requireErrorShape(t, r, 403)
		require.Contains(t, msg, "reads only")
		list, err := e.Admin.ListSecrets(ctx, "")
		require.NoError(t, err)
		for _, x := range list {
			require.NotEqual(t, "VIEWER_WRITE", x.Key)
		}
	})
}

// An event stream of a session ends when the session does (the service's
// Recheck knows sessions).
func TestSessionStreamEndsAtSignOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	s := signIn(t, e, a, e.OwnerToken, "owner")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := a.hc.Do(a.request(ctx, t, call{Method: "GET", Path: "/v1/events", Header: s.header("")}))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	r := a.send(t, call{Method: "DELETE", Path: "/v1/session", Header: s.header(e.URL)})
	require.Equal(t, 204, r.Status, r.String())
	sc := bufio.NewScanner(resp.Body)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), "signed out") {
			return
		}
	}
	t.Fatalf("the stream did not end with the session: %q (%v)", seen, sc.Err())
}

// Sign-in secrets (link codes, session secrets, CSRF tokens) reach no log,
// audit entry, event or error: only the minter's answer holds the code,
// only the sign-in's Set-Cookie the session, only GET /v1/session the CSRF
// token.
func TestSignInSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	e := newEnv(t, testenv.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	a := newAPI(t, e)
	out := &outputs{}
	stop := openStreams(t, a, out, map[string]string{"events(owner)": e.OwnerToken})

	l := mintLink(t, e, e.OwnerToken, "owner")
	code := strings.TrimPrefix(l.URL, e.URL+"/login?code=")
	s := signIn(t, e, a, e.OwnerToken, "owner")
	secrets := []string{code, s.cookie, s.cookie[strings.LastIndex(s.cookie, "_")+1:], s.csrf,
		code[strings.LastIndex(code, "_")+1:]}

	record := func(label string, r result) {
		out.add(label, r.Body)
		for k, vs := range r.Header {
			out.add(label+" header "+k, []byte(strings.Join(vs, ",")))
		}
	}
	resp, body := openLink(t, l.URL)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, body = openLink(t, l.URL) // used twice
	out.add("login used twice", []byte(body+strings.Join(resp.Header.Values("Set-Cookie"), ",")))
	resp, body = openLink(t, e.URL+"/login?code="+flip(code))
	out.add("login forged", []byte(body+strings.Join(resp.Header.Values("Set-Cookie"), ",")))
	record("csrf refused", a.send(t, call{Method: "POST", Path: "/v1/workspaces", Header: session{cookie: s.cookie}.header("https://evil.example"),
		Body: []byte(`{"name":"x"}`)}))
	record("csrf refused", a.send(t, call{Method: "POST", Path: "/v1/workspaces", Header: session{cookie: s.cookie, csrf: flip(s.csrf)}.header(e.URL),
		Body: []byte(`{"name":"x"}`)}))
	record("ambiguous", a.send(t, call{Method: "GET", Path: "/v1/whoami", Token: e.OwnerToken, Header: s.header("")}))
	record("forged cookie", a.send(t, call{Method: "GET", Path: "/v1/whoami", Header: session{cookie: flip(s.cookie)}.header("")}))
	record("whoami", a.send(t, call{Method: "GET", Path: "/v1/whoami", Header: s.header("")}))
	record("sign-out", a.send(t, call{Method: "DELETE", Path: "/v1/session", Header: s.header(e.URL)}))
	record("after sign-out", a.send(t, call{Method: "GET", Path: "/v1/whoami", Header: s.header("")}))
	page, err := e.Admin.ListAudit(context.Background(), "", 1000, 0)
	require.NoError(t, err)
	out.add("audit", mustJSON(t, page))
	stop()
	out.add("logs", logs.Bytes())

	out.mu.Lock()
	defer out.mu.Unlock()
	for label, b := range out.seen {
		for _, x := range secrets {
			require.NotContains(t, string(b), x, "a sign-in secret leaked into %s", label)
		}
	}
	require.Contains(t, string(out.seen["audit"]), "session.create")
}
