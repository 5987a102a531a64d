package core

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
)

// Canvas sign-in: a person opens a one-time login link in a browser and
// gets a session, whose cookie the API takes like that person's user
// token. Agents never obtain one: only a person mints a link, and only for
// a person whose role does not exceed what the minter may hand out.

// Lifetimes of sign-in credentials.
const (
	// LoginLinkTTL: a login link works once, within this time.
	LoginLinkTTL = 10 * time.Minute
	// SessionIdle: a session unused this long ends (last use is recorded
	// at most once a minute, like a token's).
	SessionIdle = 12 * time.Hour
	// SessionLifetime: a session ends this long after sign-in, however
	// much it is used.
	SessionLifetime = 7 * 24 * time.Hour
)

// LoginLink is a freshly minted sign-in link. URL holds the one-time code:
// it is shown once, to the minter, and stored only as a hash.
type LoginLink struct {
	ID        string
	UserID    string
	URL       string
	ExpiresAt time.Time
}

// CreateLoginLink mints a one-time sign-in link for a person (id or name):
// the way a person gets a canvas session. Only a person mints one, never
// an agent nor an admin token: an owner for anyone, an admin for admins
// and viewers (an admin must not be able to sign in as an owner). Audited
// as user.login_link, without the code.
func (s *Service) CreateLoginLink(ctx context.Context, ref string) (LoginLink, error) {
	p, err := principal(ctx)
	if err != nil {
		return LoginLink{}, err
	}
	ev := &auditEvent{Action: "user.login_link", TargetKind: "user", TargetID: ref, Detail: map[string]any{}}
	var link LoginLink
	err = s.mutate(ctx, p, ev, func(tx store.Store) error {
		if !p.IsPerson() || p.IsAgent() {
			return Forbidden("a sign-in link is minted by a person (an owner, or an admin for admins and viewers); no token of an agent or of automation may")
		}
		if p.Role != auth.RoleOwner && p.Role != auth.RoleAdmin {
			return Forbidden("minting a sign-in link: a %s reads only", p.Role)
		}
		u, err := liveUser(ctx, tx, p.OrgID, ref)
		if err != nil {
			return err
		}
		ev.TargetID, ev.Detail["name"], ev.Detail["role"] = u.ID, u.Name, u.Role
		if p.Role != auth.RoleOwner && u.Role == store.RoleOwner {
			return Forbidden("an admin mints sign-in links for admins and viewers only; %s is an owner", u.Name)
		}
		link, err = s.mintLoginLink(ctx, tx, u, p.TokenID)
		ev.Detail["link_id"], ev.Detail["expires_at"] = link.ID, link.ExpiresAt
		return err
	})
	return link, err
}

// OwnerLoginLink mints a sign-in link for the org's person "owner": an
// operator action (`orgplane up` prints one at every start), audited as
// orgplane's own.
func (s *Service) OwnerLoginLink(ctx context.Context, orgID string) (LoginLink, error) {
	var link LoginLink
	err := s.store.InTx(ctx, func(tx store.Store) error {
		u, err := tx.GetUserByName(ctx, orgID, "owner")
		if err != nil {
			return notFoundAs(err, "user", "owner")
		}
		if u.Role != store.RoleOwner {
			return Refused("not_owner", "the person named owner is a %s; mint a link as an owner with `orgplane users login-link`", u.Role)
		}
		if link, err = s.mintLoginLink(ctx, tx, u, ""); err != nil {
			return err
		}
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, systemPrincipal(orgID), auditEvent{
			Action: "user.login_link", TargetKind: "user", TargetID: u.ID,
			Detail: map[string]any{"name": u.Name, "role": u.Role, "link_id": link.ID, "expires_at": link.ExpiresAt, "why": "orgplane up"},
		}, "ok"))
		return err
	})
	return link, err
}

// liveUser finds a live person of the org by id or name.
func liveUser(ctx context.Context, tx store.Store, orgID, ref string) (store.User, error) {
	var u store.User
	var err error
	if ids.Valid("u", ref) {
		u, err = tx.GetUser(ctx, orgID, ref)
		if err == nil && !u.RemovedAt.IsZero() {
			err = store.ErrNotFound
		}
	} else {
		u, err = tx.GetUserByName(ctx, orgID, ref)
	}
	return u, notFoundAs(err, "user", ref)
}

func (s *Service) mintLoginLink(ctx context.Context, tx store.Store, u store.User, by string) (LoginLink, error) {
	now := s.clock.Now()
	l := store.LoginLink{ID: ids.New("l"), OrgID: u.OrgID, UserID: u.ID, CreatedBy: by, CreatedAt: now, ExpiresAt: now.Add(LoginLinkTTL)}
	code, hash := auth.NewSecret(auth.KindLoginCode, l.ID)
	l.CodeHash = hash
	if err := tx.InsertLoginLink(ctx, l); err != nil {
		return LoginLink{}, err
	}
	return LoginLink{ID: l.ID, UserID: u.ID, ExpiresAt: l.ExpiresAt,
		URL: strings.TrimRight(s.cfg.AdvertiseURL, "/") + "/login?code=" + url.QueryEscape(code)}, nil
}

// SignedIn is a new session: Cookie is the value of the session cookie,
// shown once (only its hash is stored).
type SignedIn struct {
	Session store.Session
	Cookie  string
}

// SignIn uses a login link's code: once, before it expires, for a person
// who is still there. It creates a session. The link is consumed by a
// compare-and-set, so two sign-ins with one code give one session; a
// refused code creates nothing. Refusals of a real link are audited in its
// org (session.create); a code that is no link's has no org to be audited
// in.
func (s *Service) SignIn(ctx context.Context, code string) (SignedIn, error) {
	id, secret, err := auth.ParseAs(auth.KindLoginCode, code)
	if err != nil {
		return SignedIn{}, invalidCode()
	}
	var out SignedIn
	var refused *auditEvent
	var who auth.Principal
	err = s.store.InTx(ctx, func(tx store.Store) error {
		refused = nil
		l, err := tx.GetLoginLink(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return invalidCode()
		}
		if err != nil {
			return err
		}
		if !auth.Verify(secret, l.CodeHash) {
			return invalidCode()
		}
		who = auth.Principal{Kind: auth.KindUser, OrgID: l.OrgID, UserID: l.UserID, Via: auth.ViaSession}
		ev := auditEvent{Action: "session.create", TargetKind: "session", Detail: map[string]any{"user_id": l.UserID, "link_id": l.ID}}
		refused = &ev
		now := s.clock.Now()
		if !l.UsedAt.IsZero() {
			return linkUsed()
		}
		if !now.Before(l.ExpiresAt) {
			return &Error{Status: http.StatusGone, Code: "login_link_expired",
				Message: "this sign-in link has expired (links last 10 minutes); ask for a new one"}
		}
		u, err := tx.GetUser(ctx, l.OrgID, l.UserID)
		if err != nil {
			return err
		}
		if !u.RemovedAt.IsZero() {
			return &Error{Status: http.StatusGone, Code: "user_removed", Message: "the person this sign-in link was for was removed"}
		}
		won, err := tx.UseLoginLink(ctx, l.ID, now)
		if err != nil {
			return err
		}
		if !won {
			return linkUsed()
		}
		x := store.Session{ID: ids.New("s"), OrgID: l.OrgID, UserID: u.ID, LoginLinkID: l.ID,
			CreatedAt: now, ExpiresAt: now.Add(SessionLifetime), LastSeenAt: now}
		out.Cookie, x.SecretHash = auth.NewSecret(auth.KindSession, x.ID)
		if err := tx.InsertSession(ctx, x); err != nil {
			return err
		}
		out.Session = x
		who.TokenID, who.Role = x.ID, u.Role
		ev.TargetID = x.ID
		ev.Detail["role"], ev.Detail["expires_at"] = u.Role, x.ExpiresAt
		_, err = tx.AppendAudit(ctx, s.auditEntry(ctx, who, ev, "ok"))
		return err
	})
	if err != nil {
		if refused != nil && AsError(err).Status < 500 {
			s.appendAudit(ctx, who, *refused, outcomeOf(AsError(err)))
		}
		return SignedIn{}, err
	}
	return out, nil
}

func invalidCode() *Error {
	return Invalid("invalid_login_code", "this sign-in link is not valid: check that it was copied whole, or ask for a new one")
}

func linkUsed() *Error {
	return &Error{Status: http.StatusGone, Code: "login_link_used",
		Message: "this sign-in link was already used (each link works once); ask for a new one"}
}

// authenticateSession turns a session cookie into its principal: a person
// (Kind user, Via session, TokenID the session id), whose role is read at
// every call. A state-changing call must also prove it comes from the
// canvas itself: a same-origin Origin header and the session's CSRF token.
func (s *Service) authenticateSession(ctx context.Context, c Credentials) (auth.Principal, error) {
	if len(c.SessionCookie) > 1 {
		return auth.Principal{}, Invalid("ambiguous_credentials", "more than one %s cookie; send exactly one", auth.SessionCookie)
	}
	id, secret, err := auth.ParseAs(auth.KindSession, c.SessionCookie[0])
	if err != nil {
		return auth.Principal{}, Unauthorized("invalid session; sign in again")
	}
	x, err := s.store.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return auth.Principal{}, Unauthorized("invalid session; sign in again")
	}
	if err != nil {
		return auth.Principal{}, err
	}
	if !auth.Verify(secret, x.SecretHash) {
		return auth.Principal{}, Unauthorized("invalid session; sign in again")
	}
	now := s.clock.Now()
	u, err := s.sessionLive(ctx, x, now)
	if err != nil {
		return auth.Principal{}, err
	}
	p := auth.Principal{Kind: auth.KindUser, OrgID: x.OrgID, TokenID: x.ID, UserID: u.ID, Role: u.Role,
		ExpiresAt: x.ExpiresAt, Via: auth.ViaSession}
	if !safeMethod(c.Method) {
		if err := s.checkSameSite(ctx, p, c); err != nil {
			return auth.Principal{}, err
		}
	}
	if now.Sub(x.LastSeenAt) > touchEvery {
		if err := s.store.TouchSession(ctx, x.ID, now); err != nil {
			s.log.Warn("record session use", "session_id", x.ID, "err", err)
		}
	}
	return p, nil
}

// sessionLive is the rule for a session to keep working: not signed out,
// within its lifetime, used within the idle time, its person still there.
// It returns that person, whose role is the session's.
func (s *Service) sessionLive(ctx context.Context, x store.Session, now time.Time) (store.User, error) {
	switch {
	case !x.RevokedAt.IsZero():
		return store.User{}, Unauthorized("session signed out; sign in again")
	case !now.Before(x.ExpiresAt):
		return store.User{}, Unauthorized("session expired (a session lasts at most 7 days); sign in again")
	case !now.Before(x.LastSeenAt.Add(SessionIdle)):
		return store.User{}, Unauthorized("session expired after 12 hours without use; sign in again")
	}
	u, err := s.store.GetUser(ctx, x.OrgID, x.UserID)
	if errors.Is(err, store.ErrNotFound) || err == nil && !u.RemovedAt.IsZero() {
		return store.User{}, Unauthorized("the person this session belongs to was removed; the session no longer works")
	}
	return u, err
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// checkSameSite is the CSRF rule for a state-changing call with a session
// cookie: exactly one Origin header, equal to the advertise URL's origin
// or to the request's own (scheme://host), and exactly one X-CSRF-Token
// header equal to the session's token. A refusal is audited: it is a page
// of another site acting with a person's cookie, or a client that forgot
// the token.
func (s *Service) checkSameSite(ctx context.Context, p auth.Principal, c Credentials) error {
	var refusal *Error
	switch {
	case len(c.Origin) != 1 || !sameOrigin(c.Origin[0], s.cfg.AdvertiseURL, c.RequestOrigin):
		refusal = &Error{Status: http.StatusForbidden, Code: "cross_origin",
			Message: "a state-changing call with a session cookie must come from orgplane's own pages: its Origin header must be this server's origin"}
	case len(c.CSRFToken) != 1 || s.keys == nil ||
		subtle.ConstantTimeCompare([]byte(c.CSRFToken[0]), []byte(s.keys.csrfToken(p.TokenID))) != 1:
		refusal = &Error{Status: http.StatusForbidden, Code: "csrf_token_invalid",
			Message: "a state-changing call with a session cookie needs the session's X-CSRF-Token header (GET /v1/session gives it)"}
	default:
		return nil
	}
	s.appendAudit(ctx, p, auditEvent{Action: "auth.csrf", TargetKind: "session", TargetID: p.TokenID,
		Detail: map[string]any{"code": refusal.Code, "method": c.Method}}, "denied")
	return refusal
}

// sameOrigin reports whether origin (an Origin header) is the origin of
// advertise (the server's advertise URL) or own (the request's own
// scheme://host). Schemes and hosts compare without case, and a default
// port counts as none.
func sameOrigin(origin, advertise, own string) bool {
	o, ok := normOrigin(origin)
	if !ok || strings.Count(origin, "/") != 2 {
		return false // "null", a path, junk: browsers send scheme://host[:port]
	}
	for _, want := range []string{advertise, own} {
		if w, ok := normOrigin(want); ok && w == o {
			return true
		}
	}
	return false
}

func normOrigin(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		host = strings.ToLower(u.Hostname())
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	return scheme + "://" + host, true
}

// csrfToken is a session's CSRF token: an HMAC of its id under a key
// derived from the master key. It needs no storage, and no one without the
// master key can compute it.
func (k *Keyring) csrfToken(sessionID string) string {
	mac := hmac.New(sha256.New, crypto.CSRFKey(k.master))
	mac.Write([]byte(sessionID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// SessionInfo describes the caller's own session.
type SessionInfo struct {
	ID, UserID, Name, Role string
	// CSRFToken must accompany every state-changing call of the session
	// (header X-CSRF-Token).
	CSRFToken     string
	CreatedAt     time.Time
	ExpiresAt     time.Time // the absolute end
	IdleExpiresAt time.Time // when it ends unless used before
}

func requireSession(p auth.Principal) error {
	if p.Via != auth.ViaSession {
		return Invalid("no_session", "this call is for a canvas session (the %s cookie); it came with a token", auth.SessionCookie)
	}
	return nil
}

// CurrentSession describes the caller's session, with its CSRF token (the
// canvas reads it here). Only a session caller has one.
func (s *Service) CurrentSession(ctx context.Context) (SessionInfo, error) {
	p, err := principal(ctx)
	if err != nil {
		return SessionInfo{}, err
	}
	if err := requireSession(p); err != nil {
		return SessionInfo{}, err
	}
	if s.keys == nil {
		return SessionInfo{}, errors.New("current session: no key ring")
	}
	x, err := s.store.GetSession(ctx, p.TokenID)
	if err != nil {
		return SessionInfo{}, err
	}
	u, err := s.sessionLive(ctx, x, s.clock.Now())
	if err != nil {
		return SessionInfo{}, err
	}
	last := x.LastSeenAt
	return SessionInfo{ID: x.ID, UserID: u.ID, Name: u.Name, Role: u.Role, CSRFToken: s.keys.csrfToken(x.ID),
		CreatedAt: x.CreatedAt, ExpiresAt: x.ExpiresAt, IdleExpiresAt: last.Add(SessionIdle)}, nil
}

// SignOut ends the caller's session (session.revoke, audited).
func (s *Service) SignOut(ctx context.Context) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	ev := &auditEvent{Action: "session.revoke", TargetKind: "session", TargetID: p.TokenID}
	return s.mutate(ctx, p, ev, func(tx store.Store) error {
		if err := requireSession(p); err != nil {
			ev.TargetKind, ev.TargetID = "", ""
			return err
		}
		return tx.RevokeSession(ctx, p.OrgID, p.TokenID, s.clock.Now())
	})
}

// AdvertiseURL is how boxes and browsers reach this control plane.
func (s *Service) AdvertiseURL() string { return s.cfg.AdvertiseURL }
