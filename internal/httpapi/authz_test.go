package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// The authorization matrix: every /v1 endpoint of routes.go and
// routes_boxes.go × every kind of caller, each row with the status the
// contract (DESIGN "HTTP API v1", "principal"; STYLE "Authorization")
// demands. A refused mutation must change nothing: rows that expect a
// refusal compare a snapshot of what the endpoint would change, taken with
// the org's admin client before and after.
//
// The expired token is minted through the API with expires_at ~1.5s ahead
// (checked valid right away) and the fixture then waits, on the real clock,
// until the server refuses it: it exercises the same path a real expiry
// takes, at the cost of a short wait that overlaps the fixture's setup.

// class is how a caller's expectation is looked up in a row.
type class int

const (
	unauthenticated class = iota // 401 whatever the endpoint
	headerMismatch               // 403 whatever the endpoint
	otherOrg
	otherWorkspace
	ownWorkspace
	adminClass
	// agentAdminClass is an admin token bound to a workspace (the
	// platform's management token): an agent, whose gated writes wait for
	// people (202 {"approval": ...}, nothing changed).
	agentAdminClass
	// People, by role (user tokens).
	ownerClass
	personAdminClass
	viewerClass
	// People signed in to the canvas (session cookie, Origin and CSRF
	// token as the canvas sends them): as the people above, unless the
	// endpoint says otherwise (want.session).
	ownerSessionClass
	personAdminSessionClass
	viewerSessionClass
	// An owner's session cookie with neither Origin nor CSRF token (a page
	// of another site): reads as the owner, 403 for any write.
	crossSiteSessionClass
	// A session cookie and an Authorization header: 400 whatever the
	// endpoint.
	ambiguousClass
)

// personOf is the person class a session class acts as.
func personOf(c class) class {
	switch c {
	case ownerSessionClass, crossSiteSessionClass:
		return ownerClass
	case personAdminSessionClass:
		return personAdminClass
	case viewerSessionClass:
		return viewerClass
	}
	return c
}

// want is an endpoint's expected status per authenticated caller class.
// The people's are optional: an owner and an admin person get what an
// admin token gets, a viewer the same for a read (GET) and 403 otherwise.
type want struct {
	otherOrg, otherWS, ownWS, admin int
	owner, personAdmin, viewer      int
	// agent is the bound admin token's, when it is not admin's: 202 for
	// an action the default policy gates.
	agent int
	// session, if set, is what every session caller gets (the endpoints
	// of the session itself).
	session int
}

// gatedFor reports whether the row's caller is an agent whose call the
// policy holds for an approval.
func (w want) gatedFor(c class) bool { return c == agentAdminClass && w.agent == http.StatusAccepted }

func (w want) of(c class, method string) int {
	or := func(v, def int) int {
		if v != 0 {
			return v
		}
		return def
	}
	switch c {
	case agentAdminClass:
		return or(w.agent, w.admin)
	case ambiguousClass:
		return http.StatusBadRequest
	case crossSiteSessionClass:
		if method != http.MethodGet {
			return http.StatusForbidden
		}
		return w.of(ownerSessionClass, method)
	case ownerSessionClass, personAdminSessionClass, viewerSessionClass:
		if w.session != 0 {
			return w.session
		}
		return w.of(personOf(c), method)
	case ownerClass:
		return or(w.owner, w.admin)
	case personAdminClass:
		return or(w.personAdmin, w.admin)
	case viewerClass:
		if method == http.MethodGet {
			return or(w.viewer, w.admin)
		}
		return or(w.viewer, http.StatusForbidden)
	}
	switch c {
	case unauthenticated:
		return http.StatusUnauthorized
	case headerMismatch:
		return http.StatusForbidden
	case otherOrg:
		return w.otherOrg
	case otherWorkspace:
		return w.otherWS
	case ownWorkspace:
		return w.ownWS
	}
	return w.admin
}

// target is what a row acts on: a workspace, its own token, and the other
// objects some endpoints address.
type target struct {
	ws        string // workspace id
	wsToken   string // that workspace's own token
	job       string // a restart job of the workspace
	change    string // a change of the workspace's own secret
	tokenID   string // a token to revoke
	globalKey string // a global secret to delete
	userID    string // a person to remove
	askID     string // an approval or a request asked by ws's own token
	// sessions, when set, replace the fixture's session callers' (an
	// endpoint that ends the caller's session gets fresh ones per row).
	sessions map[class]session
}

type authzFixture struct {
	e   *testenv.Env
	api *api

	platform   string
	admin      string // the org's first admin token
	acting     string // an admin token bound to the platform workspace
	revoked    string // a revoked admin token
	expired    string // an expired workspace token of the shared target
	otherAdmin string // the admin of another org
	otherOrgWS string // a workspace of the other org
	global     string // a change of a global secret
	b          target // another workspace of the org, with its token
	shared     target // the default target: a running workspace

	owner, personAdmin, viewer string // user tokens of people by role
	viewerID                   string // the viewer's user id
	sessions                   map[class]session
}

// signInAll signs the fixture's three people in to the canvas.
func (f *authzFixture) signInAll(t testing.TB) map[class]session {
	return map[class]session{
		ownerSessionClass:       signIn(t, f.e, f.api, f.owner, "owner"),
		personAdminSessionClass: signIn(t, f.e, f.api, f.owner, "a-admin"),
		viewerSessionClass:      signIn(t, f.e, f.api, f.owner, "a-viewer"),
	}
}

func (f *authzFixture) session(tg *target, c class) session {
	if tg.sessions != nil {
		return tg.sessions[c]
	}
	return f.sessions[c]
}

// caller is one kind of caller; auth gives its Authorization header value
// (raw) and its X-Workspace-ID header values for a target.
type caller struct {
	name  string
	class class
	auth  func(f *authzFixture, tg *target) (authz string, xws []string)
	// header, if set, adds headers (a session's cookie, Origin, CSRF token).
	header func(f *authzFixture, tg *target) http.Header
}

func noAuth(*authzFixture, *target) (string, []string) { return "", nil }

// sessionCaller is a person's canvas session, sending what the canvas sends.
func sessionCaller(name string, c class) caller {
	return caller{name, c, noAuth, func(f *authzFixture, tg *target) http.Header {
		return f.session(tg, c).header(f.e.URL)
	}}
}

// gatedForAgents is w for an action the default policy gates for agents.
func gatedForAgents(w want) want {
	w.agent = http.StatusAccepted
	return w
}

func bearer(tok string) string { return "Bearer " + tok }

var callers = []caller{
	{"no-token", unauthenticated, func(*authzFixture, *target) (string, []string) { return "", nil }, nil},
	{"malformed-token", unauthenticated, func(*authzFixture, *target) (string, []string) {
		return "Bearer not-a-token", nil
	}, nil},
	{"revoked-token", unauthenticated, func(f *authzFixture, _ *target) (string, []string) { return bearer(f.revoked), nil }, nil},
	{"expired-token", unauthenticated, func(f *authzFixture, _ *target) (string, []string) { return bearer(f.expired), nil }, nil},
	{"other-org-admin", otherOrg, func(f *authzFixture, _ *target) (string, []string) { return bearer(f.otherAdmin), nil }, nil},
	{"other-workspace-token", otherWorkspace, func(f *authzFixture, _ *target) (string, []string) {
		return bearer(f.b.wsToken), nil
	}, nil},
	{"own-workspace-token", ownWorkspace, func(_ *authzFixture, tg *target) (string, []string) {
		return bearer(tg.wsToken), nil
	}, nil},
	{"admin", adminClass, func(f *authzFixture, _ *target) (string, []string) { return bearer(f.admin), nil }, nil},
	{"acting-admin", agentAdminClass, func(f *authzFixture, _ *target) (string, []string) { return bearer(f.acting), nil }, nil},
	// X-Workspace-ID never establishes identity: one that disagrees with
	// the token is refused, one that agrees changes nothing.
	{"own-token+foreign-X-Workspace-ID", headerMismatch, func(f *authzFixture, tg *target) (string, []string) {
		return bearer(tg.wsToken), []string{f.b.ws}
	}, nil},
	{"own-token+matching-X-Workspace-ID", ownWorkspace, func(_ *authzFixture, tg *target) (string, []string) {
		return bearer(tg.wsToken), []string{tg.ws}
	}, nil},
	{"admin+X-Workspace-ID", headerMismatch, func(f *authzFixture, tg *target) (string, []string) {
		// An unbound admin token acts from no workspace: any header disagrees.
		return bearer(f.admin), []string{tg.ws}
	}, nil},
	{"acting-admin+matching-X-Workspace-ID", agentAdminClass, func(f *authzFixture, _ *target) (string, []string) {
		return bearer(f.acting), []string{f.platform}
	}, nil},
	{"owner", ownerClass, func(f *authzFixture, _ *target) (string, []string) { return bearer(f.owner), nil }, nil},
	{"admin-person", personAdminClass, func(f *authzFixture, _ *target) (string, []string) { return bearer(f.personAdmin), nil }, nil},
	{"viewer", viewerClass, func(f *authzFixture, _ *target) (string, []string) { return bearer(f.viewer), nil }, nil},
	// A person acts from no workspace: any X-Workspace-ID disagrees.
	{"viewer+X-Workspace-ID", headerMismatch, func(f *authzFixture, tg *target) (string, []string) {
		return bearer(f.viewer), []string{tg.ws}
	}, nil},
	sessionCaller("owner-session", ownerSessionClass),
	sessionCaller("admin-session", personAdminSessionClass),
	sessionCaller("viewer-session", viewerSessionClass),
	{"viewer-session+X-Workspace-ID", headerMismatch, func(_ *authzFixture, tg *target) (string, []string) {
		return "", []string{tg.ws}
	}, func(f *authzFixture, tg *target) http.Header {
		return f.session(tg, viewerSessionClass).header(f.e.URL)
	}},
	{"owner-session-cross-site", crossSiteSessionClass, noAuth, func(f *authzFixture, tg *target) http.Header {
		return session{cookie: f.session(tg, ownerSessionClass).cookie}.header("")
	}},
	{"owner-session+bearer", ambiguousClass, func(f *authzFixture, _ *target) (string, []string) { return bearer(f.owner), nil },
		func(f *authzFixture, tg *target) http.Header { return f.session(tg, ownerSessionClass).header(f.e.URL) }},
}

type endpoint struct {
	name   string
	method string
	path   func(f *authzFixture, tg *target) string
	// body is built when the row runs; nil sends none.
	body func(t *testing.T, f *authzFixture, tg *target) []byte
	// fresh makes a target of the row's own; nil uses the shared one.
	fresh func(t *testing.T, f *authzFixture) *target
	want  want
	// state is a snapshot of what the endpoint changes; a refused row (and
	// any row of another org) must leave it equal.
	state func(t *testing.T, f *authzFixture, tg *target) string
	// check looks further at a successful answer.
	check  func(t *testing.T, f *authzFixture, tg *target, c caller, r result)
	stream bool
}

func TestAuthzMatrix(t *testing.T) {
	t.Parallel()
	f := newAuthzFixture(t)
	endpoints := authzEndpoints()
	rows := 0
	for _, ep := range endpoints {
		t.Run(ep.name, func(t *testing.T) {
			for _, c := range callers {
				rows++
				t.Run(c.name, func(t *testing.T) {
					tg := &f.shared
					if ep.fresh != nil {
						tg = ep.fresh(t, f)
					}
					status := ep.want.of(c.class, ep.method)
					gated := ep.want.gatedFor(c.class)
					guard := ep.state != nil && (status >= 400 || c.class == otherOrg || gated)
					var before string
					if guard {
						before = ep.state(t, f, tg)
					}
					authz, xws := c.auth(f, tg)
					req := call{Method: ep.method, Path: ep.path(f, tg), Auth: authz, Header: http.Header{}}
					if xws != nil {
						req.Header["X-Workspace-Id"] = xws
					}
					if c.header != nil {
						for k, v := range c.header(f, tg) {
							req.Header[k] = v
						}
					}
					if ep.body != nil {
						req.Body = ep.body(t, f, tg)
					}
					var r result
					if ep.stream {
						r = f.api.sendStream(t, req, 300*time.Millisecond)
					} else {
						r = f.api.send(t, req)
					}
					require.Equal(t, status, r.Status, "%s %s as %s: %s", ep.method, req.Path, c.name, r)
					switch {
					case status >= 400:
						requireErrorShape(t, r, status)
					case gated:
						ar := decodeJSON[client.ApprovalRequired](t, r)
						require.Equal(t, "pending", ar.Approval.State, "%s", r)
						require.NotNil(t, ar.Approval.Action, "%s", r)
					case ep.check != nil:
						as := c
						as.class = personOf(c.class) // a session acts as its person
						ep.check(t, f, tg, as, r)
					}
					if guard {
						require.Equal(t, before, ep.state(t, f, tg), "a refused %s %s as %s changed something", ep.method, req.Path, c.name)
					}
				})
			}
		})
	}
	require.Equal(t, len(endpoints)*len(callers), rows)
	t.Logf("authorization matrix: %d endpoints x %d callers = %d rows", len(endpoints), len(callers), rows)
}

func newAuthzFixture(t *testing.T) *authzFixture {
	ctx := context.Background()
	e := newEnv(t, testenv.Options{})
	f := &authzFixture{e: e, api: newAPI(t, e), platform: e.Org.Platform.ID, admin: e.AdminToken}

	// First, so that its expiry overlaps the rest of the setup.
	a, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "own", Spec: boxSpec, RestartPolicy: "manual"})
	require.NoError(t, err)
	exp, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "workspace", Name: "expiring", WorkspaceID: a.ID,
		ExpiresAt: new(time.Now().Add(1500 * time.Millisecond))})
	require.NoError(t, err)
	f.expired = exp.Secret
	_, err = e.Client(f.expired).Whoami(ctx)
	require.NoError(t, err, "the expiring token must work before it expires")

	f.shared = target{ws: a.ID, wsToken: mintWorkspaceToken(t, e.Admin, a.ID).Secret}
	b, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "other", RestartPolicy: "manual", Start: new(false)})
	require.NoError(t, err)
	f.b = target{ws: b.ID, wsToken: mintWorkspaceToken(t, e.Admin, b.ID).Secret}

	act, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "concierge", ActingWorkspaceID: f.platform})
	require.NoError(t, err)
	f.acting = act.Secret
	rev, err := e.Admin.CreateToken(ctx, client.CreateToken{Kind: "admin", Name: "revoked"})
	require.NoError(t, err)
	require.NoError(t, e.Admin.RevokeToken(ctx, rev.Token.ID))
	f.revoked = rev.Secret

	f.owner = e.OwnerToken
	for _, who := range []struct {
		role string
		tok  *string
	}{{"admin", &f.personAdmin}, {"viewer", &f.viewer}} {
		u, err := e.Owner.CreateUser(ctx, client.CreateUser{Name: "a-" + who.role, Role: who.role})
		require.NoError(t, err)
		*who.tok = e.UserToken(e.Org.Org.ID, u.ID, "cli")
		if who.role == "viewer" {
			f.viewerID = u.ID
		}
	}
	f.sessions = f.signInAll(t)

	other, otherAdmin := e.NewOrg("other-org")
	f.otherAdmin = other.Secret
	c, err := otherAdmin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "theirs", Start: new(false)})
	require.NoError(t, err)
	f.otherOrgWS = c.ID

	// A restart job of the shared target, finished, so that it stays put.
	waitStatus(t, e.Admin, a.ID, "running", 1)
	job, err := e.Admin.RestartWorkspace(ctx, a.ID, "fixture")
	require.NoError(t, err)
	f.shared.job = job.ID
	eventually(t, 10*time.Second, func() bool {
		var j client.RestartJob
		err := e.Admin.Do(ctx, http.MethodGet, "/v1/restarts/"+job.ID, nil, &j)
		return err == nil && j.State == "succeeded"
	}, "restart job %s succeeded", job.ID)
	waitStatus(t, e.Admin, a.ID, "running", 2)

	// Secrets to see. The shared workspaces are manual and the others
	// stopped, so no write in the matrix restarts anything.
	g, err := e.Admin.SetSecret(ctx, "", "SHARED_GLOBAL", "g", false)
	require.NoError(t, err)
	f.global = g.ChangeID
	own, err := e.Admin.SetSecret(ctx, a.ID, "OWN_SECRET", "o", false)
	require.NoError(t, err)
	f.shared.change = own.ChangeID
	require.NotEmpty(t, f.global)
	require.NotEmpty(t, f.shared.change)

	eventually(t, 5*time.Second, func() bool {
		_, err := e.Client(f.expired).Whoami(ctx)
		ce, ok := err.(*client.Error)
		return ok && ce.Status == http.StatusUnauthorized
	}, "the expiring token expired")
	return f
}

// freshTarget is a stopped, manual workspace of its own with its token.
func freshTarget(t *testing.T, f *authzFixture) *target {
	t.Helper()
	w, err := f.e.Admin.CreateWorkspace(context.Background(), client.CreateWorkspace{
		Name: uniq("fresh"), Spec: boxSpec, RestartPolicy: "manual", Start: new(false)})
	require.NoError(t, err)
	return &target{ws: w.ID, wsToken: mintWorkspaceToken(t, f.e.Admin, w.ID).Secret}
}

func wsPath(sub string) func(*authzFixture, *target) string {
	return func(_ *authzFixture, tg *target) string { return "/v1/workspaces/" + tg.ws + sub }
}

func fixed(p string) func(*authzFixture, *target) string {
	return func(*authzFixture, *target) string { return p }
}

func jsonBody(v any) func(*testing.T, *authzFixture, *target) []byte {
	return func(t *testing.T, _ *authzFixture, _ *target) []byte { return mustJSON(t, v) }
}

// Snapshots, read with the org's admin.

func wsState(t *testing.T, f *authzFixture, tg *target) string {
	w, err := f.e.Admin.GetWorkspace(context.Background(), tg.ws)
	require.NoError(t, err)
	parent := ""
	if w.ParentID != nil {
		parent = *w.ParentID
	}
	return fmt.Sprintf("%s|%s|%s|%s|%s|%v|%d|%s", w.Name, parent, w.Spec, w.Status, w.RestartPolicy, w.Protected,
		w.Generation, w.UpdatedAt.Format(time.RFC3339Nano))
}

func workspaceIDs(t *testing.T, f *authzFixture, _ *target) string {
	list, err := f.e.Admin.ListWorkspaces(context.Background())
	require.NoError(t, err)
	ids := make([]string, len(list))
	for i, w := range list {
		ids[i] = w.ID
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

func secretState(scope func(*target) string) func(*testing.T, *authzFixture, *target) string {
	return func(t *testing.T, f *authzFixture, tg *target) string {
		list, err := f.e.Admin.ListSecrets(context.Background(), scope(tg))
		require.NoError(t, err)
		var parts []string
		for _, s := range list {
			parts = append(parts, fmt.Sprintf("%s:%s:%d", s.Key, s.Scope, s.Version))
		}
		return strings.Join(parts, ",")
	}
}

// tokenState lists the tokens people minted (box tokens come and go with
// background restarts of other rows' workspaces).
// defaultPutPolicy is the default policy as a PUT body (writing it
// changes no rule, so the matrix's successful rows leave the org as it was).
func defaultPutPolicy() client.PutPolicy {
	t := true
	n := func(v int) *int { return &v }
	return client.PutPolicy{
		Gates:            &client.PutPolicyGates{PlatformRestart: &t, GlobalSecret: &t, WorkspaceDelete: &t, AdminToken: &t, WorkspaceProtection: &t},
		RestartThreshold: n(10), Quorum: n(1), DefaultTTLSeconds: n(86400), MaxTTLSeconds: n(7 * 86400),
	}
}

func policyState(t *testing.T, f *authzFixture, _ *target) string {
	t.Helper()
	p, err := f.e.Owner.GetPolicy(context.Background())
	require.NoError(t, err)
	return fmt.Sprintf("%+v %v", p, p.UpdatedAt)
}

func userState(t *testing.T, f *authzFixture, _ *target) string {
	t.Helper()
	list, err := f.e.Owner.ListUsers(context.Background())
	require.NoError(t, err)
	return fmt.Sprint(list)
}

func tokenState(t *testing.T, f *authzFixture, _ *target) string {
	list, err := f.e.Admin.ListTokens(context.Background())
	require.NoError(t, err)
	var parts []string
	for _, tok := range list {
		if strings.HasPrefix(tok.Name, "box-g") {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s:%v", tok.ID, tok.RevokedAt != nil))
	}
	return strings.Join(parts, ",")
}

func restartsState(t *testing.T, f *authzFixture, tg *target) string {
	list, err := f.e.Admin.ListRestarts(context.Background(), tg.ws)
	require.NoError(t, err)
	return fmt.Sprintf("%d jobs|%s", len(list), wsState(t, f, tg))
}

func authzEndpoints() []endpoint {
	wsScope := func(tg *target) string { return tg.ws }
	globalScope := func(*target) string { return "" }
	// Reads of a workspace's objects: hidden from other orgs and other
	// workspaces, open to the workspace itself and admins.
	wsRead := want{otherOrg: 404, otherWS: 404, ownWS: 200, admin: 200}
	// Admin-only operations on a workspace: its own token gets 403.
	wsAdmin := want{otherOrg: 404, otherWS: 404, ownWS: 403, admin: 200}
	// Org-level admin-only operations: another org's admin acts on its own org.
	orgAdmin := want{otherOrg: 200, otherWS: 403, ownWS: 403, admin: 200}
	everyone := want{otherOrg: 200, otherWS: 200, ownWS: 200, admin: 200}

	return append([]endpoint{
		{name: "whoami", method: "GET", path: fixed("/v1/whoami"), want: everyone,
			check: func(t *testing.T, f *authzFixture, tg *target, c caller, r result) {
				p := decodeJSON[client.Whoami](t, r).Principal
				switch c.class {
				case ownWorkspace:
					require.Equal(t, "workspace", p.Kind)
					require.Equal(t, tg.ws, p.WorkspaceID)
				case otherWorkspace:
					require.Equal(t, f.b.ws, p.WorkspaceID)
				case adminClass:
					require.Equal(t, "admin", p.Kind)
					require.Equal(t, f.e.Org.Org.ID, p.OrgID)
					if strings.HasPrefix(c.name, "acting") {
						require.Equal(t, f.platform, p.ActingWorkspaceID)
					}
				case otherOrg:
					require.NotEqual(t, f.e.Org.Org.ID, p.OrgID)
				case ownerClass, personAdminClass, viewerClass:
					require.Equal(t, "user", p.Kind)
					require.NotEmpty(t, p.UserID)
					require.Equal(t, map[class]string{ownerClass: "owner", personAdminClass: "admin", viewerClass: "viewer"}[c.class], p.Role)
					require.Empty(t, p.ActingWorkspaceID, "a person acts from no workspace")
				}
			}},
		{name: "workspaces.list", method: "GET", path: fixed("/v1/workspaces"), want: everyone,
			check: func(t *testing.T, f *authzFixture, tg *target, c caller, r result) {
				var ids []string
				for _, w := range decodeJSON[[]client.Workspace](t, r) {
					ids = append(ids, w.ID)
				}
				switch c.class {
				case otherOrg:
					require.Equal(t, []string{f.otherOrgWS}, without(ids, platformOf(t, f, c)))
				case otherWorkspace:
					require.Equal(t, []string{f.b.ws}, ids, "a workspace token sees only itself")
				case ownWorkspace:
					require.Equal(t, []string{tg.ws}, ids, "a workspace token sees only itself")
				case adminClass, ownerClass, personAdminClass, viewerClass:
					require.Subset(t, ids, []string{f.platform, f.shared.ws, f.b.ws})
					require.NotContains(t, ids, f.otherOrgWS)
				}
			}},
		{name: "workspaces.create", method: "POST", path: fixed("/v1/workspaces"),
			body: func(t *testing.T, _ *authzFixture, tg *target) []byte {
				return mustJSON(t, map[string]any{"name": uniq("created"), "parent_id": tg.ws, "start": false})
			},
			want:  want{otherOrg: 404, otherWS: 403, ownWS: 403, admin: 201},
			state: workspaceIDs},
		{name: "workspaces.get", method: "GET", path: wsPath(""), want: wsRead,
			check: func(t *testing.T, _ *authzFixture, tg *target, _ caller, r result) {
				require.Equal(t, tg.ws, decodeJSON[client.Workspace](t, r).ID)
			}},
		{name: "workspaces.patch", method: "PATCH", path: wsPath(""), fresh: freshTarget,
			body: jsonBody(map[string]any{"protected": true}), want: gatedForAgents(wsAdmin), state: wsState,
			check: func(t *testing.T, _ *authzFixture, _ *target, _ caller, r result) {
				require.True(t, decodeJSON[client.Workspace](t, r).Protected)
			}},
		{name: "workspaces.delete", method: "DELETE", path: wsPath(""), fresh: freshTarget, want: gatedForAgents(wsAdmin), state: wsState,
			check: func(t *testing.T, _ *authzFixture, tg *target, _ caller, r result) {
				require.Equal(t, []string{tg.ws}, decodeJSON[client.DeleteWorkspaceResult](t, r).Removed)
			}},
		{name: "workspaces.restart", method: "POST", path: wsPath("/restart"), fresh: freshTarget,
			body:  jsonBody(map[string]any{"reason": "authz"}),
			want:  want{otherOrg: 404, otherWS: 404, ownWS: 403, admin: 202},
			state: restartsState},
		{name: "workspaces.pause", method: "POST", path: wsPath("/pause"), fresh: freshTarget, want: wsAdmin, state: wsState},
		{name: "workspaces.resume", method: "POST", path: wsPath("/resume"), want: wsAdmin, state: wsState,
			fresh: func(t *testing.T, f *authzFixture) *target {
				tg := freshTarget(t, f)
				_, err := f.e.Admin.PauseWorkspace(context.Background(), tg.ws)
				require.NoError(t, err)
				return tg
			}},
		{name: "workspaces.restarts", method: "GET", path: wsPath("/restarts"), want: wsRead,
			check: func(t *testing.T, _ *authzFixture, tg *target, _ caller, r result) {
				var ids []string
				for _, j := range decodeJSON[[]client.RestartJob](t, r) {
					ids = append(ids, j.ID)
				}
				require.Contains(t, ids, tg.job)
			}},
		{name: "workspaces.heartbeat", method: "POST", path: wsPath("/heartbeat"),
			body: func(t *testing.T, f *authzFixture, tg *target) []byte {
				w, err := f.e.Admin.GetWorkspace(context.Background(), tg.ws)
				require.NoError(t, err)
				return mustJSON(t, map[string]any{"generation": w.Generation})
			},
			// The own workspace's tokens here are minted by an admin, not the
			// box's: only the current box's token may heartbeat (see
			// TestHeartbeatOnlyFromTheCurrentBoxToken).
			want:  want{otherOrg: 404, otherWS: 404, ownWS: 403, admin: 403},
			state: wsState},
		{name: "workspaces.logs", method: "GET", path: wsPath("/logs"), want: wsAdmin},
		{name: "secrets.list", method: "GET", path: wsPath("/secrets"), want: wsRead,
			check: func(t *testing.T, _ *authzFixture, _ *target, _ caller, r result) {
				var keys []string
				for _, s := range decodeJSON[[]client.SecretMeta](t, r) {
					keys = append(keys, s.Key)
				}
				require.Equal(t, []string{"OWN_SECRET", "SHARED_GLOBAL"}, keys)
			}},
		// A workspace token manages its own workspace's secrets.
		{name: "secrets.put", method: "PUT", path: wsPath("/secrets/AUTHZ_PROBE"), fresh: freshTarget,
			body: jsonBody(map[string]any{"value": "probe"}), want: wsRead, state: secretState(wsScope),
			check: func(t *testing.T, f *authzFixture, tg *target, _ caller, _ result) {
				require.Equal(t, "AUTHZ_PROBE:workspace:1,SHARED_GLOBAL:global:1", secretState(wsScope)(t, f, tg))
			}},
		{name: "secrets.delete", method: "DELETE", path: wsPath("/secrets/FRESH_KEY"), want: wsRead, state: secretState(wsScope),
			fresh: func(t *testing.T, f *authzFixture) *target {
				tg := freshTarget(t, f)
				_, err := f.e.Admin.SetSecret(context.Background(), tg.ws, "FRESH_KEY", "x", false)
				require.NoError(t, err)
				return tg
			},
			check: func(t *testing.T, f *authzFixture, tg *target, _ caller, _ result) {
				require.Equal(t, "SHARED_GLOBAL:global:1", secretState(wsScope)(t, f, tg))
			}},
		// Humans write secrets, boxes read them: only the workspace's token.
		{name: "secrets.values", method: "GET", path: wsPath("/secrets/values"),
			want: want{otherOrg: 404, otherWS: 404, ownWS: 200, admin: 403},
			check: func(t *testing.T, _ *authzFixture, _ *target, _ caller, r result) {
				require.Equal(t, map[string]string{"OWN_SECRET": "o", "SHARED_GLOBAL": "g"}, decodeJSON[map[string]string](t, r))
			}},
		{name: "global-secrets.list", method: "GET", path: fixed("/v1/secrets"), want: orgAdmin,
			check: func(t *testing.T, _ *authzFixture, _ *target, c caller, r result) {
				list := decodeJSON[[]client.SecretMeta](t, r)
				if c.class == otherOrg {
					for _, s := range list {
						require.NotEqual(t, "SHARED_GLOBAL", s.Key, "another org's globals leaked")
					}
					return
				}
				require.NotEmpty(t, list)
			}},
		{name: "global-secrets.put", method: "PUT", path: fixed("/v1/secrets/AUTHZ_GLOBAL"),
			body: func(t *testing.T, _ *authzFixture, _ *target) []byte {
				return mustJSON(t, map[string]any{"value": uniq("v")})
			},
			want: orgAdmin, state: secretState(globalScope)},
		{name: "global-secrets.delete", method: "DELETE",
			path: func(_ *authzFixture, tg *target) string { return "/v1/secrets/" + tg.globalKey },
			fresh: func(t *testing.T, f *authzFixture) *target {
				key := strings.ToUpper(strings.ReplaceAll(uniq("DEL"), "-", "_"))
				_, err := f.e.Admin.SetSecret(context.Background(), "", key, "x", false)
				require.NoError(t, err)
				tg := f.shared
				tg.globalKey = key
				return &tg
			},
			// Another org's admin finds no such secret in its own org.
			want: want{otherOrg: 404, otherWS: 403, ownWS: 403, admin: 200}, state: secretState(globalScope)},
		{name: "tokens.list", method: "GET", path: fixed("/v1/tokens"), want: orgAdmin,
			check: func(t *testing.T, f *authzFixture, _ *target, c caller, r result) {
				for _, tok := range decodeJSON[[]client.Token](t, r) {
					if c.class == otherOrg {
						require.NotEqual(t, f.e.Org.Org.ID, tok.OrgID)
					}
				}
				require.NotContains(t, string(r.Body), "secret_hash")
			}},
		{name: "tokens.create", method: "POST", path: fixed("/v1/tokens"),
			body: func(t *testing.T, _ *authzFixture, tg *target) []byte {
				return mustJSON(t, client.CreateToken{Kind: "workspace", Name: uniq("minted"), WorkspaceID: tg.ws})
			},
			want:  want{otherOrg: 404, otherWS: 403, ownWS: 403, admin: 201},
			state: tokenState},
		{name: "tokens.revoke", method: "DELETE",
			path: func(_ *authzFixture, tg *target) string { return "/v1/tokens/" + tg.tokenID },
			fresh: func(t *testing.T, f *authzFixture) *target {
				tg := f.shared
				tg.tokenID = mintWorkspaceToken(t, f.e.Admin, tg.ws).Token.ID
				return &tg
			},
			want:  want{otherOrg: 404, otherWS: 403, ownWS: 403, admin: 204},
			state: tokenState},
		{name: "audit", method: "GET", path: fixed("/v1/audit?limit=1000"), want: orgAdmin,
			check: func(t *testing.T, f *authzFixture, _ *target, c caller, r result) {
				if c.class == otherOrg {
					require.NotContains(t, string(r.Body), f.shared.ws, "another org's audit log leaked")
					require.NotContains(t, string(r.Body), f.e.Org.Org.ID, "another org's audit log leaked")
				}
			}},
		{name: "events", method: "GET", path: fixed("/v1/events"), want: everyone, stream: true,
			check: func(t *testing.T, _ *authzFixture, _ *target, _ caller, r result) {
				require.Equal(t, "text/event-stream", r.Header.Get("Content-Type"))
			}},
		{name: "restarts.list", method: "GET", path: fixed("/v1/restarts?limit=1000"), want: orgAdmin,
			check: func(t *testing.T, f *authzFixture, _ *target, c caller, r result) {
				for _, j := range decodeJSON[[]client.RestartJob](t, r) {
					if c.class == otherOrg {
						require.NotEqual(t, f.e.Org.Org.ID, j.OrgID, "another org's restarts leaked")
					}
				}
			}},
		{name: "policy.get", method: "GET", path: fixed("/v1/policy"), want: orgAdmin,
			check: func(t *testing.T, _ *authzFixture, _ *target, _ caller, r result) {
				require.Equal(t, 1, decodeJSON[client.Policy](t, r).Quorum)
			}},
		{name: "policy.put", method: "PUT", path: fixed("/v1/policy"),
			body: func(t *testing.T, _ *authzFixture, _ *target) []byte { return mustJSON(t, defaultPutPolicy()) },
			// Owners only: never an agent, never automation, not an admin person.
			want:  want{otherOrg: 403, otherWS: 403, ownWS: 403, admin: 403, owner: 200, personAdmin: 403},
			state: policyState},
		{name: "users.list", method: "GET", path: fixed("/v1/users"),
			want: want{otherOrg: 200, otherWS: 403, ownWS: 403, admin: 200, viewer: 403},
			check: func(t *testing.T, f *authzFixture, _ *target, c caller, r result) {
				var names []string
				for _, u := range decodeJSON[[]client.User](t, r) {
					names = append(names, u.Name)
				}
				if c.class == otherOrg {
					require.Equal(t, []string{"owner"}, names, "another org's people leaked")
				} else {
					require.Subset(t, names, []string{"owner", "a-admin", "a-viewer"})
				}
			}},
		{name: "users.create", method: "POST", path: fixed("/v1/users"),
			body: func(t *testing.T, _ *authzFixture, _ *target) []byte {
				return mustJSON(t, client.CreateUser{Name: uniq("person"), Role: "viewer"})
			},
			// People are managed by owners alone: no token of an agent or
			// of automation, and no admin person, creates one.
			want:  want{otherOrg: 403, otherWS: 403, ownWS: 403, admin: 403, owner: 201, personAdmin: 403},
			state: userState},
		{name: "users.delete", method: "DELETE",
			path: func(_ *authzFixture, tg *target) string { return "/v1/users/" + tg.userID },
			fresh: func(t *testing.T, f *authzFixture) *target {
				tg := f.shared
				u, err := f.e.Owner.CreateUser(context.Background(), client.CreateUser{Name: uniq("leaving"), Role: "viewer"})
				require.NoError(t, err)
				tg.userID = u.ID
				return &tg
			},
			want:  want{otherOrg: 403, otherWS: 403, ownWS: 403, admin: 403, owner: 204, personAdmin: 403},
			state: userState},
		// A change of a workspace's own secret is the workspace's to read; a
		// global change (every workspace's decision) the org readers' only.
		{name: "changes.get", method: "GET",
			path: func(_ *authzFixture, tg *target) string { return "/v1/changes/" + tg.change }, want: wsRead,
			check: func(t *testing.T, _ *authzFixture, tg *target, _ caller, r result) {
				require.Equal(t, tg.change, decodeJSON[client.Change](t, r).ID)
			}},
		{name: "changes.decisions", method: "GET",
			path: func(f *authzFixture, _ *target) string { return "/v1/changes/" + f.global + "/decisions" },
			want: want{otherOrg: 404, otherWS: 404, ownWS: 404, admin: 200},
			check: func(t *testing.T, f *authzFixture, _ *target, _ caller, r result) {
				require.NotEmpty(t, decodeJSON[[]client.Decision](t, r))
			}},
		{name: "restarts.get", method: "GET",
			path: func(_ *authzFixture, tg *target) string { return "/v1/restarts/" + tg.job }, want: wsRead,
			check: func(t *testing.T, _ *authzFixture, tg *target, _ caller, r result) {
				require.Equal(t, tg.job, decodeJSON[client.RestartJob](t, r).ID)
			}},
		// Sign-in links: people only (never an agent nor automation); an
		// admin for admins and viewers; a viewer never.
		{name: "users.login-links", method: "POST",
			path: func(f *authzFixture, _ *target) string { return "/v1/users/" + f.viewerID + "/login-links" },
			want: want{otherOrg: 403, otherWS: 403, ownWS: 403, admin: 403, owner: 201, personAdmin: 201, viewer: 403},
			state: func(t *testing.T, f *authzFixture, _ *target) string {
				return fmt.Sprint(countRows(t, f.e, "login_links"))
			},
			check: func(t *testing.T, f *authzFixture, _ *target, _ caller, r result) {
				l := decodeJSON[client.LoginLink](t, r)
				require.True(t, strings.HasPrefix(l.URL, f.e.URL+"/login?code="), l.URL)
				require.Equal(t, f.viewerID, l.UserID)
			}},
		// The caller's own session: only a session has one.
		{name: "session.get", method: "GET", path: fixed("/v1/session"),
			want: want{otherOrg: 400, otherWS: 400, ownWS: 400, admin: 400, owner: 400, personAdmin: 400, viewer: 400, session: 200},
			check: func(t *testing.T, f *authzFixture, tg *target, c caller, r result) {
				x := decodeJSON[client.Session](t, r)
				require.Equal(t, map[class]string{ownerClass: "owner", personAdminClass: "admin", viewerClass: "viewer"}[c.class], x.Role)
				require.NotEmpty(t, x.CSRFToken)
			}},
		{name: "session.delete", method: "DELETE", path: fixed("/v1/session"),
			fresh: func(t *testing.T, f *authzFixture) *target {
				tg := f.shared
				tg.sessions = f.signInAll(t)
				return &tg
			},
			want: want{otherOrg: 400, otherWS: 400, ownWS: 400, admin: 400, owner: 400, personAdmin: 400, viewer: 400, session: 204},
			state: func(t *testing.T, f *authzFixture, tg *target) string {
				var out []string
				for _, c := range []class{ownerSessionClass, personAdminSessionClass, viewerSessionClass} {
					r := f.api.send(t, call{Method: "GET", Path: "/v1/whoami", Header: session{cookie: tg.sessions[c].cookie}.header("")})
					out = append(out, fmt.Sprint(r.Status))
				}
				return strings.Join(out, ",")
			},
			check: func(t *testing.T, f *authzFixture, tg *target, c caller, r result) {
				for k, x := range tg.sessions {
					r := f.api.send(t, call{Method: "GET", Path: "/v1/whoami", Header: session{cookie: x.cookie}.header("")})
					if personOf(k) == c.class {
						require.Equal(t, 401, r.Status, "the caller's session ended")
					} else {
						require.Equal(t, 200, r.Status, "other sessions live on")
					}
				}
			}},
	}, askEndpoints()...)
}

// askEndpoints are the approvals' and requests' rows: the org's people and
// admin tokens see them all, an agent those of its own workspace; only a
// person who is an owner or admin decides or answers (never an agent,
// never the requester), only the requester cancels.
func askEndpoints() []endpoint {
	var out []endpoint
	for _, kind := range []string{"approvals", "requests"} {
		base := "/v1/" + kind
		createBody := map[string]any{"title": "may I?"}
		if kind == "requests" {
			createBody["ask"] = "text"
		}
		fresh := func(t *testing.T, f *authzFixture) *target {
			tg := f.shared
			r := f.api.send(t, call{Method: "POST", Path: base, Token: tg.wsToken, Body: mustJSON(t, createBody)})
			require.Equal(t, 201, r.Status, "%s", r)
			tg.askID = decodeJSON[struct{ ID string }](t, r).ID
			return &tg
		}
		askPath := func(sub string) func(*authzFixture, *target) string {
			return func(_ *authzFixture, tg *target) string { return base + "/" + tg.askID + sub }
		}
		state := func(t *testing.T, f *authzFixture, tg *target) string {
			r := f.api.send(t, call{Method: "GET", Path: base + "/" + tg.askID, Token: f.owner})
			require.Equal(t, 200, r.Status, "%s", r)
			var x struct {
				State     string
				Decisions []any
				Answer    string
			}
			require.NoError(t, json.Unmarshal(r.Body, &x))
			return fmt.Sprintf("%s %d %q", x.State, len(x.Decisions), x.Answer)
		}
		count := func(t *testing.T, f *authzFixture, _ *target) string {
			r := f.api.send(t, call{Method: "GET", Path: base + "?limit=1000", Token: f.owner})
			require.Equal(t, 200, r.Status, "%s", r)
			return fmt.Sprint(len(decodeJSON[[]any](t, r)))
		}
		decide := want{otherOrg: 404, otherWS: 404, ownWS: 403, admin: 403, owner: 200, personAdmin: 200, viewer: 403}
		decidePath, decideBody := askPath("/decision"), map[string]any{"decision": "approve"}
		if kind == "requests" {
			decidePath, decideBody = askPath("/answer"), map[string]any{"text": "yes"}
		}
		out = append(out,
			endpoint{name: kind + ".list", method: "GET", path: fixed(base),
				want: want{otherOrg: 200, otherWS: 200, ownWS: 200, admin: 200}},
			endpoint{name: kind + ".create", method: "POST", path: fixed(base), body: jsonBody(createBody),
				want:  want{otherOrg: 201, otherWS: 201, ownWS: 201, admin: 201, viewer: 403},
				state: count},
			endpoint{name: kind + ".get", method: "GET", path: askPath(""), fresh: fresh,
				want: want{otherOrg: 404, otherWS: 404, ownWS: 200, admin: 200}},
			endpoint{name: kind + ".decide", method: "POST", path: decidePath, fresh: fresh, body: jsonBody(decideBody),
				want: decide, state: state},
			endpoint{name: kind + ".cancel", method: "POST", path: askPath("/cancel"), fresh: fresh,
				want:  want{otherOrg: 404, otherWS: 404, ownWS: 200, admin: 403, owner: 403, personAdmin: 403, viewer: 403},
				state: state},
		)
		if kind == "requests" {
			out = append(out, endpoint{name: "requests.decline", method: "POST", path: askPath("/decline"), fresh: fresh,
				body: jsonBody(map[string]any{"note": "no"}), want: decide, state: state})
		}
	}
	return out
}

func without(ids []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == drop })
}

// platformOf returns the platform workspace of the caller's org.
func platformOf(t *testing.T, f *authzFixture, c caller) string {
	authz, _ := c.auth(f, &f.shared)
	r := f.api.send(t, call{Method: "GET", Path: "/v1/workspaces", Auth: authz})
	require.Equal(t, 200, r.Status)
	for _, w := range decodeJSON[[]client.Workspace](t, r) {
		if w.Kind == "platform" {
			return w.ID
		}
	}
	return ""
}

// A removed workspace's token (its box's, or one an admin minted) is not
// revoked by the delete; it must still get nothing of the org's secrets:
// it no longer authenticates at all (401, saying why).
func TestRemovedWorkspaceTokenReadsNoSecrets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, testenv.Options{})
	a := newAPI(t, e)
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "doomed", Start: new(false)})
	require.NoError(t, err)
	tok := mintWorkspaceToken(t, e.Admin, w.ID).Secret
	_, err = e.Admin.SetSecret(ctx, "", "ORG_WIDE", "org-wide-value", false)
	require.NoError(t, err)
	_, err = e.Admin.SetSecret(ctx, w.ID, "OWN", "own-value", false)
	require.NoError(t, err)
	r := a.send(t, call{Method: "GET", Path: "/v1/workspaces/" + w.ID + "/secrets/values", Token: tok})
	require.Equal(t, 200, r.Status, "%s", r)

	_, err = e.Admin.DeleteWorkspace(ctx, w.ID, false)
	require.NoError(t, err)
	for _, c := range []call{
		{Method: "GET", Path: "/v1/workspaces/" + w.ID + "/secrets/values"},
		{Method: "GET", Path: "/v1/workspaces/" + w.ID + "/secrets"},
		{Method: "PUT", Path: "/v1/workspaces/" + w.ID + "/secrets/OWN", Body: []byte(`{"value":"x"}`)},
		{Method: "DELETE", Path: "/v1/workspaces/" + w.ID + "/secrets/OWN"},
	} {
		c.Token = tok
		r := a.send(t, c)
		_, msg := requireErrorShape(t, r, http.StatusUnauthorized)
		require.Contains(t, msg, "workspace was removed")
		require.NotContains(t, string(r.Body), "org-wide-value")
	}
}
