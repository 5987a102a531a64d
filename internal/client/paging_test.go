package client

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNextCursor(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		links []string
		want  string
	}{
		{"none", nil, ""},
		{"next", []string{`</v1/workspaces?after=abc&limit=5>; rel="next"`}, "abc"},
		{"absolute", []string{`<https://op.example/v1/audit?after=x_y-z&workspace_id=w1>; rel="next"`}, "x_y-z"},
		{"unquoted rel, spaces", []string{`</v1/x?after=q>;rel=next`}, "q"},
		{"rel of several types", []string{`</v1/x?after=q>; rel="prefetch next"`}, "q"},
		{"case of rel", []string{`</v1/x?after=q>; REL="Next"`}, "q"},
		{"another rel only", []string{`</v1/x?after=q>; rel="prev"`}, ""},
		{"two links in one header", []string{`</v1/x?after=p>; rel="prev", </v1/x?after=n>; rel="next"`}, "n"},
		{"two headers", []string{`</v1/x?after=p>; rel="prev"`, `</v1/x?after=n>; rel="next"`}, "n"},
		{"no after", []string{`</v1/x?limit=5>; rel="next"`}, ""},
		{"not a link", []string{`rel="next"`}, ""},
		{"escaped cursor", []string{`</v1/x?after=a%2Db>; rel="next"`}, "a-b"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for _, l := range c.links {
				h.Add("Link", l)
			}
			require.Equal(t, c.want, NextCursor(h))
		})
	}
}
