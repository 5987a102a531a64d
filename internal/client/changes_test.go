package client

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNextLink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		links []string
		want  string
	}{
		{[]string{`</v1/changes/c1/decisions?after=w2&limit=2>; rel="next"`}, "/v1/changes/c1/decisions?after=w2&limit=2"},
		{[]string{`</v1/x>; rel="prev", </v1/y>; rel=next`}, "/v1/y"},
		{[]string{`</v1/x>; rel="prev"`, `</v1/y>; REL="next"`}, "/v1/y"},
		// Never elsewhere: the token would go with it.
		{[]string{`<https://elsewhere.example/v1/x>; rel="next"`}, ""},
		{[]string{`<//elsewhere.example/v1/x>; rel="next"`}, ""},
		{[]string{`</metrics>; rel="next"`}, ""},
		{nil, ""},
		{[]string{`garbage`}, ""},
	} {
		h := http.Header{}
		for _, l := range tc.links {
			h.Add("Link", l)
		}
		require.Equal(t, tc.want, nextLink(h), "%q", tc.links)
	}
}
