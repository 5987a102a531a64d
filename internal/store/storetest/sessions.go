package storetest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/store"
)

func (f *fixture) person(orgID, name, role string) store.User {
	f.t.Helper()
	u := store.User{ID: id("u"), OrgID: orgID, Name: name, Role: role, CreatedAt: t0}
	require.NoError(f.t, f.s.InsertUser(f.ctx, u))
	return u
}

func (f *fixture) loginLink(u store.User, mods ...func(*store.LoginLink)) store.LoginLink {
	f.t.Helper()
	l := store.LoginLink{ID: id("l"), OrgID: u.OrgID, UserID: u.ID, CodeHash: []byte{1, 2, 0, 0xfe},
		CreatedBy: "t1", CreatedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	for _, m := range mods {
		m(&l)
	}
	require.NoError(f.t, f.s.InsertLoginLink(f.ctx, l))
	return l
}

func testLoginLinks(t *testing.T, f *fixture) {
	o, _ := f.org("acme")
	ann := f.person(o.ID, "ann", store.RoleAdmin)
	l := f.loginLink(ann)
	got, err := f.s.GetLoginLink(f.ctx, l.ID)
	require.NoError(t, err)
	want := l
	want.CreatedAt, want.ExpiresAt = us(l.CreatedAt), us(l.ExpiresAt)
	require.Equal(t, want, got)
	_, err = f.s.GetLoginLink(f.ctx, "l-missing")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, f.s.InsertLoginLink(f.ctx, l), store.ErrConflict, "duplicate id")

	// The schema refuses a link of nobody, or one that ends before it begins.
	bad := []func(*store.LoginLink){
		func(x *store.LoginLink) { x.UserID = "u-missing" },
		func(x *store.LoginLink) { x.OrgID = "o-missing" },
		func(x *store.LoginLink) { x.ExpiresAt = x.CreatedAt },
	}
	for i, m := range bad {
		x := l
		x.ID = id("l")
		m(&x)
		require.ErrorIs(t, f.s.InsertLoginLink(f.ctx, x), store.ErrConflict, "case %d", i)
	}

	// Once, and only before it expires.
	won, err := f.s.UseLoginLink(f.ctx, l.ID, t0.Add(time.Minute))
	require.NoError(t, err)
	require.True(t, won)
	won, err = f.s.UseLoginLink(f.ctx, l.ID, t0.Add(2*time.Minute))
	require.NoError(t, err)
	require.False(t, won, "used twice")
	got, err = f.s.GetLoginLink(f.ctx, l.ID)
	require.NoError(t, err)
	require.Equal(t, us(t0.Add(time.Minute)), got.UsedAt, "the first use stays")

	late := f.loginLink(ann)
	won, err = f.s.UseLoginLink(f.ctx, late.ID, late.ExpiresAt)
	require.NoError(t, err)
	require.False(t, won, "at its expiry it is over")
	got, err = f.s.GetLoginLink(f.ctx, late.ID)
	require.NoError(t, err)
	require.True(t, got.UsedAt.IsZero(), "an expired link is not marked used")
	won, err = f.s.UseLoginLink(f.ctx, "l-missing", t0)
	require.NoError(t, err)
	require.False(t, won)
}

// Many sign-ins with one link at once: exactly one wins.
func testLoginLinkRace(t *testing.T, f *fixture) {
	o, _ := f.org("acme")
	l := f.loginLink(f.person(o.ID, "ann", store.RoleViewer))
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			err := f.s.InTx(f.ctx, func(tx store.Store) error {
				won, err := tx.UseLoginLink(f.ctx, l.ID, t0.Add(time.Duration(i+1)*time.Second))
				if won {
					wins.Add(1)
				}
				return err
			})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	require.EqualValues(t, 1, wins.Load())
}

func testSessions(t *testing.T, f *fixture) {
	o, _ := f.org("acme")
	other, _ := f.org("other")
	ann := f.person(o.ID, "ann", store.RoleOwner)
	bob := f.person(o.ID, "bob", store.RoleViewer)
	newSession := func(u store.User, l store.LoginLink) store.Session {
		return store.Session{ID: id("s"), OrgID: u.OrgID, UserID: u.ID, SecretHash: []byte{0xff, 0, 7}, LoginLinkID: l.ID,
			CreatedAt: t0, ExpiresAt: t0.Add(7 * 24 * time.Hour), LastSeenAt: t0}
	}
	s1 := newSession(ann, f.loginLink(ann))
	require.NoError(t, f.s.InsertSession(f.ctx, s1))
	got, err := f.s.GetSession(f.ctx, s1.ID)
	require.NoError(t, err)
	want := s1
	want.CreatedAt, want.ExpiresAt, want.LastSeenAt = us(t0), us(s1.ExpiresAt), us(t0)
	require.Equal(t, want, got)
	_, err = f.s.GetSession(f.ctx, "s-missing")
	require.ErrorIs(t, err, store.ErrNotFound)

	dup := newSession(ann, store.LoginLink{ID: s1.LoginLinkID})
	require.ErrorIs(t, f.s.InsertSession(f.ctx, dup), store.ErrConflict, "one session per link")
	require.ErrorIs(t, f.s.InsertSession(f.ctx, newSession(ann, store.LoginLink{ID: "l-missing"})), store.ErrConflict, "a session comes from a link")
	noUser := newSession(ann, f.loginLink(ann))
	noUser.UserID = "u-missing"
	require.ErrorIs(t, f.s.InsertSession(f.ctx, noUser), store.ErrConflict)

	// Last seen moves forward only.
	require.NoError(t, f.s.TouchSession(f.ctx, s1.ID, t0.Add(2*time.Minute)))
	require.NoError(t, f.s.TouchSession(f.ctx, s1.ID, t0.Add(time.Minute)))
	got, err = f.s.GetSession(f.ctx, s1.ID)
	require.NoError(t, err)
	require.Equal(t, us(t0.Add(2*time.Minute)), got.LastSeenAt)
	require.NoError(t, f.s.TouchSession(f.ctx, "s-missing", t0), "touching a missing session is harmless")

	// Revoking: scoped by org, twice keeps the first time.
	require.ErrorIs(t, f.s.RevokeSession(f.ctx, other.ID, s1.ID, t0), store.ErrNotFound)
	require.NoError(t, f.s.RevokeSession(f.ctx, o.ID, s1.ID, t0.Add(time.Hour)))
	require.NoError(t, f.s.RevokeSession(f.ctx, o.ID, s1.ID, t0.Add(2*time.Hour)))
	got, err = f.s.GetSession(f.ctx, s1.ID)
	require.NoError(t, err)
	require.Equal(t, us(t0.Add(time.Hour)), got.RevokedAt)

	// A person's sessions, all at once, and no one else's.
	s2, s3 := newSession(ann, f.loginLink(ann)), newSession(ann, f.loginLink(ann))
	sb := newSession(bob, f.loginLink(bob))
	for _, x := range []store.Session{s2, s3, sb} {
		require.NoError(t, f.s.InsertSession(f.ctx, x))
	}
	n, err := f.s.RevokeUserSessions(f.ctx, o.ID, ann.ID, t0.Add(3*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 2, n, "the live ones")
	for _, x := range []store.Session{s2, s3} {
		got, err := f.s.GetSession(f.ctx, x.ID)
		require.NoError(t, err)
		require.Equal(t, us(t0.Add(3*time.Hour)), got.RevokedAt)
	}
	got, err = f.s.GetSession(f.ctx, s1.ID)
	require.NoError(t, err)
	require.Equal(t, us(t0.Add(time.Hour)), got.RevokedAt, "already revoked: kept")
	got, err = f.s.GetSession(f.ctx, sb.ID)
	require.NoError(t, err)
	require.True(t, got.RevokedAt.IsZero(), "another person's session lives")
	n, err = f.s.RevokeUserSessions(f.ctx, other.ID, bob.ID, t0)
	require.NoError(t, err)
	require.Zero(t, n, "scoped by org")
}
