// Package testenv starts an in-process control plane for tests: a real
// store (SQLite in a temp dir, or a throwaway Postgres database), the
// service layer, and the HTTP API on a loopback httptest server.
package testenv

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/httpapi"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/mcp"
	"github.com/orgplane/orgplane/internal/pgtest"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/fake"
	"github.com/orgplane/orgplane/internal/store"
)

// Options configure an Env.
type Options struct {
	// Postgres runs the store on a throwaway Postgres database (skips when
	// none is available, unless ORGPLANE_TEST_REQUIRE_POSTGRES=1).
	Postgres bool
	// Runtime tunes boxes and restarts; tests usually shorten the windows.
	Runtime core.RuntimeConfig
	// Provisioners by runtime. Nil: a fake for "process" and "docker".
	Provisioners map[string]provision.Provisioner
	// Logger for the service (default: discarded).
	Logger *slog.Logger
	// MasterKey (default: a fresh one).
	MasterKey []byte
	// DBURL reuses an existing store (e.g. a second replica).
	DBURL string
	// Clock is the service's clock (default: the real one); see ShiftClock.
	Clock core.Clock
	// HoldQueue starts the Env with the changes' queued restarts held
	// (see Env.HoldQueue).
	HoldQueue bool
}

// Env is a running in-process control plane with one org.
type Env struct {
	T          testing.TB
	Store      store.Store
	Service    *core.Service
	Server     *httptest.Server
	URL        string
	DBURL      string
	MasterKey  []byte
	Org        core.NewOrg
	AdminToken string
	Admin      *client.Client
	// OwnerToken is a user token of the org's first person, "owner".
	OwnerToken string
	Owner      *client.Client
	Fake       *fake.Provisioner // when Provisioners was nil

	newService func() *core.Service
	handler    atomic.Pointer[http.Handler]
	queueHeld  atomic.Bool
}

// New starts an Env and stops it in t.Cleanup.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	ctx := context.Background()
	e := &Env{T: t, MasterKey: opts.MasterKey}
	e.queueHeld.Store(opts.HoldQueue)
	if e.MasterKey == nil {
		k, err := crypto.GenerateMasterKey()
		require.NoError(t, err)
		e.MasterKey = k
	}
	switch {
	case opts.DBURL != "":
		e.DBURL = opts.DBURL
	case opts.Postgres:
		e.DBURL = pgtest.URL(t)
	default:
		e.DBURL = "sqlite:" + filepath.Join(t.TempDir(), "orgplane.db")
	}
	st, err := store.Open(ctx, e.DBURL)
	require.NoError(t, err)
	e.Store = st
	keys, err := core.OpenKeyring(ctx, st, e.MasterKey)
	require.NoError(t, err)
	provs := opts.Provisioners
	if provs == nil {
		e.Fake = fake.New()
		provs = map[string]provision.Provisioner{provision.RuntimeProcess: e.Fake, provision.RuntimeDocker: e.Fake}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rt := opts.Runtime
	if rt.AgentCommand == nil {
		rt.AgentCommand = []string{"orgplane", "agent"}
	}
	// The server's URL is known only once it listens; boxes get it through
	// the advertise URL, so start listening first.
	srv := httptest.NewUnstartedServer(nil)
	e.URL = "http://" + srv.Listener.Addr().String()
	if rt.AdvertiseURL == "" {
		rt.AdvertiseURL = e.URL
	}
	e.newService = func() *core.Service {
		keys, err := core.OpenKeyring(ctx, st, e.MasterKey)
		require.NoError(t, err)
		s := core.New(st, core.Options{Logger: log, Keys: keys, Provisioners: provs, Runtime: rt, Clock: opts.Clock,
			HoldQueue: e.queueHeld.Load})
		var h http.Handler = httpapi.New(s, httpapi.Options{Logger: log,
			Metrics: promhttp.HandlerFor(s.Metrics().Registry, promhttp.HandlerOpts{}),
			Extra:   mcp.Mount(s, log)})
		e.handler.Store(&h)
		return s
	}
	e.Service = e.newService()
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*e.handler.Load()).ServeHTTP(w, r)
	})
	srv.Start()
	e.Server = srv
	require.NoError(t, e.Service.Start(ctx))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		e.Service.Close()
		st.Close()
	})
	_ = keys
	if opts.DBURL == "" {
		e.Org, err = e.Service.CreateOrg(ctx, "acme")
		require.NoError(t, err)
		require.NoError(t, e.Service.StartPending(ctx, e.Org.Org.ID, e.Org.Platform.ID))
		e.AdminToken = e.Org.Secret
		e.Admin = client.New(e.URL, e.AdminToken)
		e.OwnerToken = e.Org.OwnerSecret
		e.Owner = client.New(e.URL, e.OwnerToken)
	}
	return e
}

// Restart replaces the control plane with a new one on the same store,
// provisioners and URL, as a crash and restart would: boxes keep running
// and the new service adopts them. The caller must not use the old
// Service meanwhile.
func (e *Env) Restart() {
	e.T.Helper()
	e.Service.Close()
	e.Service = e.newService()
	require.NoError(e.T, e.Service.Start(context.Background()))
}

// UserToken mints a user token for a person straight in the store: how a
// person gets a first credential (a sign-in link, a session) is not what
// the tests using it are about.
func (e *Env) UserToken(orgID, userID, name string) string {
	e.T.Helper()
	t := store.Token{ID: ids.New("t"), OrgID: orgID, Kind: store.TokenUser, Name: name, UserID: userID, CreatedAt: time.Now()}
	secret, hash := auth.NewSecret(store.TokenUser, t.ID)
	t.SecretHash = hash
	require.NoError(e.T, e.Store.InsertToken(context.Background(), t))
	return secret
}

// NewOrg creates another org and returns it with an admin client.
func (e *Env) NewOrg(name string) (core.NewOrg, *client.Client) {
	e.T.Helper()
	n, err := e.Service.CreateOrg(context.Background(), name)
	require.NoError(e.T, err)
	return n, client.New(e.URL, n.Secret)
}

// Client returns a client with the given token.
func (e *Env) Client(token string) *client.Client { return client.New(e.URL, token) }

// Eventually polls cond every 20ms until it holds or the timeout passes.
func (e *Env) Eventually(timeout time.Duration, cond func() bool, msg string, args ...any) {
	e.T.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.T.Fatalf("timed out after %s: "+msg, append([]any{timeout}, args...)...)
}

// HoldQueue keeps the changes' queued restarts from being taken until
// ReleaseQueue (explicit restarts, recoveries and retries still run): a
// test changes the world between a change and its restarts.
func (e *Env) HoldQueue() { e.queueHeld.Store(true) }

// ReleaseQueue lets the workers take the queued restarts again (at their
// next poll).
func (e *Env) ReleaseQueue() { e.queueHeld.Store(false) }

// ShiftClock is the real clock moved forward by Advance: a test jumps over
// hours (an idle session, an expired link) without sleeping, while the
// service's background loops keep running on time that still moves.
type ShiftClock struct{ off atomic.Int64 }

// Now is the real time plus every Advance so far.
func (c *ShiftClock) Now() time.Time {
	return core.SystemClock{}.Now().Add(time.Duration(c.off.Load()))
}

// Advance moves the clock forward by d.
func (c *ShiftClock) Advance(d time.Duration) { c.off.Add(int64(d)) }
