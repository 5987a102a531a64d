// Package auth defines who is calling (the Principal) and the token format.
//
// A token is "op_<kind>_<id>_<secret>": kind is "admin" or "workspace", id the
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
)

// Principal kinds.
const (
	KindAdmin     = "admin"
	KindWorkspace = "workspace"
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
}

// CallerWorkspace is the workspace the caller acts from: a workspace token's
// own, or an admin token's acting workspace; "" for none.
func (p Principal) CallerWorkspace() string {
	if p.Kind == KindWorkspace {
		return p.WorkspaceID
	}
	return p.ActingWorkspaceID
}

// IsAdmin reports whether p has org-wide rights.
func (p Principal) IsAdmin() bool { return p.Kind == KindAdmin || p.Kind == KindSystem }

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

// Parse splits a token string into its kind, id and secret.
func Parse(token string) (kind, id, secret string, err error) {
	parts := strings.Split(token, "_")
	if len(parts) != 4 || parts[0] != "op" || parts[2] == "" || len(parts[3]) != 52 {
		return "", "", "", ErrMalformed
	}
	switch parts[1] {
	case "admin":
		kind = KindAdmin
	case "workspace":
		kind = KindWorkspace
	default:
		return "", "", "", ErrMalformed
	}
	return kind, parts[2], parts[3], nil
}

// Verify reports, in constant time, whether secret hashes to hash.
func Verify(secret string, hash []byte) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], hash) == 1
}
