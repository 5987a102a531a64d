package client

import (
	"context"
	"net/http"
	"time"
)

// LoginLink is a one-time canvas sign-in link (its URL holds the code).
type LoginLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
	UserID    string    `json:"user_id"`
}

// Session is the body of GET /v1/session: the caller's canvas session.
type Session struct {
	ID            string    `json:"id"`
	UserID        string    `json:"user_id"`
	Name          string    `json:"name"`
	Role          string    `json:"role"`
	CSRFToken     string    `json:"csrf_token"`
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	IdleExpiresAt time.Time `json:"idle_expires_at"`
}

// CreateLoginLink mints a one-time sign-in link for a person (id or name).
func (c *Client) CreateLoginLink(ctx context.Context, ref string) (LoginLink, error) {
	var out LoginLink
	err := c.Do(ctx, http.MethodPost, "/v1/users/"+esc(ref)+"/login-links", nil, &out)
	return out, err
}
