package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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

// DecisionPager pages a change's decisions in workspace id order,
// following the server's Link rel="next".
type DecisionPager struct {
	c    *Client
	next string // the next page's path; "" once done
}

// ChangeDecisions returns a pager of the change's decisions, limit per
// page (0: the server's default).
func (c *Client) ChangeDecisions(id string, limit int) *DecisionPager {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/changes/" + esc(id) + "/decisions"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return &DecisionPager{c: c, next: path}
}

// More reports whether Next has a page to read.
func (p *DecisionPager) More() bool { return p.next != "" }

// Next reads the next page; an empty page with More false ends it.
func (p *DecisionPager) Next(ctx context.Context) ([]Decision, error) {
	if p.next == "" {
		return nil, nil
	}
	var out []Decision
	h, err := p.c.do(ctx, http.MethodGet, p.next, nil, &out)
	if err != nil {
		return nil, err
	}
	p.next = nextLink(h)
	return out, nil
}

// nextLink finds the rel="next" target of a Link header. Only a path on
// this server is followed: the token goes with it.
func nextLink(h http.Header) string {
	for _, v := range h.Values("Link") {
		for link := range strings.SplitSeq(v, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(link), ";")
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			next := false
			for p := range strings.SplitSeq(params, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "rel") && strings.Trim(v, `"`) == "next" {
					next = true
				}
			}
			path := target[1 : len(target)-1]
			if next && strings.HasPrefix(path, "/v1/") {
				return path
			}
		}
	}
	return ""
}
