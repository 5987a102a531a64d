package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// Change states (Change.State).
const (
	ChangeInProgress = "in_progress"
	ChangeSucceeded  = "succeeded"
	ChangeFailed     = "failed"
)

// Done reports whether the change's restarts have all ended.
func (c Change) Done() bool { return c.State != "" && c.State != ChangeInProgress }

// GetChange returns a secret change and how its restarts stand.
func (c *Client) GetChange(ctx context.Context, id string) (Change, error) {
	var out Change
	err := c.Do(ctx, http.MethodGet, "/v1/changes/"+esc(id), nil, &out)
	return out, err
}

// ListChangeDecisionsPage reads one page of a change's decisions in
// workspace id order: at most limit (1-1000; 0: the server's default)
// after the cursor after ("" for the first page). next is the cursor of
// the following page, "" after the last one (see ListWorkspacesPage).
func (c *Client) ListChangeDecisionsPage(ctx context.Context, id string, limit int, after string) (list []Decision, next string, err error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if after != "" {
		q.Set("after", after)
	}
	path := "/v1/changes/" + esc(id) + "/decisions"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	h, err := c.do(ctx, http.MethodGet, path, nil, &list)
	if err != nil {
		return nil, "", err
	}
	return list, NextCursor(h), nil
}
