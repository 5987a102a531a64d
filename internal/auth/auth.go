// Package auth defines who is calling (the Principal) and the token format.
//
// A token is "op_<kind>_<id>_<secret>": kind is "admin", "workspace" or
// "user", id the
// token's row id, secret 32 random bytes in base32. Only the SHA-256 of the
// secret is stored; it is compared in constant time.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"strings"
	"time"

	"github.com/orgplane/orgplane/internal/ids"
)

// Principal kinds.
const (
	KindAdmin     = "admin"
	KindWorkspace = "workspace"
	// KindUser is a person: a user token, or (later) a canvas session.
	KindUser = "user"
	// KindSystem is orgplane itself (supervisor, workers, operator commands).
	KindSystem = "system"
)

// Principal is who is calling, derived from the bearer token alone.
type Principal struct {
	Kind  string
	OrgID string
	// WorkspaceID is the workspace of a workspace token.
	WorkspaceID string
	// ActingWorkspaceID binds an admin token to a workspace (the concierge's
	// management token is bound to the platform workspace).
	ActingWorkspaceID string
	TokenID           string
	// UserID and Role: the person behind a user principal; Role is
	// "owner", "admin" or "viewer".
	UserID string
	Role   string
	// ExpiresAt is when the token stops working; zero: never. Long-lived
	// calls (event streams) end then.
	ExpiresAt time.Time
	// Via is how the caller reached orgplane: ViaToken (a bearer token on
	// the API, the default), ViaSession (a person's canvas session cookie)
	// or ViaMCP (the MCP endpoint: always an agent).
	Via string
}

// How a principal reached orgplane (Principal.Via).
const (
	ViaToken   = "token"
	ViaSession = "session"
	ViaMCP     = "mcp"
)

// CallerWorkspace is the workspace the caller acts from: a workspace token's
// own, or an admin token's acting workspace; "" for none.
func (p Principal) CallerWorkspace() string {
	if p.Kind == KindWorkspace {
		return p.WorkspaceID
	}
	return p.ActingWorkspaceID
}

// Roles of people.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleViewer = "viewer"
)

// IsAdmin reports whether p may change the org: an admin token, orgplane
// itself, or a person whose role is owner or admin.
func (p Principal) IsAdmin() bool {
	return p.Kind == KindAdmin || p.Kind == KindSystem ||
		p.Kind == KindUser && (p.Role == RoleOwner || p.Role == RoleAdmin)
}

// CanReadOrg reports whether p may read the whole org: whoever may change
// it, and every person (a viewer reads, and only reads).
func (p Principal) CanReadOrg() bool { return p.IsAdmin() || p.Kind == KindUser }

// IsPerson reports whether p is a person (a user token or session).
func (p Principal) IsPerson() bool { return p.Kind == KindUser }

// IsAgent reports whether p is an agent: a workspace token, an admin token
// bound to an acting workspace (the concierge's management token), or
// anything over MCP. Agents ask; only people decide. This is the one
// predicate every gate and every decision rule asks.
func (p Principal) IsAgent() bool {
	return p.Kind == KindWorkspace || p.Kind == KindAdmin && p.ActingWorkspaceID != "" || p.Via == ViaMCP
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal in ctx, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

type reqIDKey struct{}

// WithRequestID returns ctx carrying the request id (for audit entries).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, reqIDKey{}, id)
}

// RequestID returns the request id in ctx, or "".
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(reqIDKey{}).(string)
	return s
}

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrMalformed is returned for a string that is not a token.
var ErrMalformed = errors.New("malformed token")

// NewSecret returns a fresh token string for the token id and kind, and
// the hash to store.
func NewSecret(kind, id string) (token string, hash []byte) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	secret := enc.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(secret))
	return "op_" + kind + "_" + id + "_" + secret, sum[:]
}

// Parse splits a token string into its kind, id and secret. It accepts
// exactly the strings NewSecret makes: a known kind, an id as ids.New("t")
// makes them, and 52 base32 characters that encode 32 bytes canonically.
// Anything else is ErrMalformed, before any store lookup.
func Parse(token string) (kind, id, secret string, err error) {
	parts := strings.Split(token, "_")
	if len(parts) != 4 || parts[0] != "op" || !ids.Valid("t", parts[2]) || !validSecret(parts[3]) {
		return "", "", "", ErrMalformed
	}
	switch parts[1] {
	case "admin":
		kind = KindAdmin
	case "workspace":
		kind = KindWorkspace
	case "user":
		kind = KindUser
	default:
		return "", "", "", ErrMalformed
	}
	return kind, parts[2], parts[3], nil
}

// validSecret reports whether s is the encoding of 32 bytes, as NewSecret
// writes it: a decoder that ignores the last character's spare bits would
// take several strings for one secret.
func validSecret(s string) bool {
	if len(s) != 52 {
		return false
	}
	b, err := enc.DecodeString(s)
	return err == nil && len(b) == 32 && enc.EncodeToString(b) == s
}

// Authorization errors: what is wrong with the Authorization header itself,
// before any token is looked at.
var (
	// ErrNoCredentials: no Authorization header.
	ErrNoCredentials = errors.New("missing bearer token")
	// ErrAmbiguousCredentials: more than one Authorization header. Which
	// one counts would depend on the proxy in between; none does.
	ErrAmbiguousCredentials = errors.New("more than one Authorization header; send exactly one")
	// ErrMalformedAuthorization: not "Bearer <token>".
	ErrMalformedAuthorization = errors.New(`malformed Authorization header: want "Bearer <token>"`)
)

// BearerToken returns the token of a request's Authorization header values
// (all of them, as http.Header.Values gives them). Exactly one header is
// accepted, of the form "Bearer <token>": the scheme in any case (RFC 9110),
// one space, and a token with no space, comma or control character in it.
func BearerToken(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", ErrNoCredentials
	case 1:
	default:
		return "", ErrAmbiguousCredentials
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", ErrMalformedAuthorization
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c == ',' || c >= 0x7f {
			return "", ErrMalformedAuthorization
		}
	}
	return token, nil
}

// Verify reports, in constant time, whether secret hashes to hash.
func Verify(secret string, hash []byte) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], hash) == 1
}

// Canvas sign-in credentials share the token format with kinds of their
// own, so that no one of them can be taken for another: a login link's
// code is "op_login_<id>_<secret>", a session's cookie value
// "op_session_<id>_<secret>" (ids made by ids.New("l") and ids.New("s")).
const (
	KindLoginCode = "login"
	KindSession   = "session"
)

// SessionCookie is the name of the canvas session cookie.
const SessionCookie = "orgplane_session"

// ParseAs splits a credential of the given kind (KindLoginCode,
// KindSession) into its id and secret; anything else is ErrMalformed.
func ParseAs(kind, s string) (id, secret string, err error) {
	var prefix string
	switch kind {
	case KindLoginCode:
		prefix = "l"
	case KindSession:
		prefix = "s"
	default:
		return "", "", ErrMalformed
	}
	parts := strings.Split(s, "_")
	if len(parts) != 4 || parts[0] != "op" || parts[1] != kind || !ids.Valid(prefix, parts[2]) || !validSecret(parts[3]) {
		return "", "", ErrMalformed
	}
	return parts[2], parts[3], nil
}
