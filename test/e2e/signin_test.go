package e2e

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var loginLinkRE = regexp.MustCompile(`http://\S+/login\?code=op_login_\S+`)

// openSignIn opens a sign-in link as a browser would, and returns the
// session cookie it set.
func openSignIn(t *testing.T, link string) *http.Cookie {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(link)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	for _, c := range resp.Cookies() {
		if c.Name == "orgplane_session" {
			return c
		}
	}
	t.Fatalf("no session cookie: %v", resp.Header.Values("Set-Cookie"))
	return nil
}

// `orgplane up` prints a fresh one-time sign-in link for the owner at every
// start; `orgplane users login-link` makes one for a person.
func TestUpPrintsASignInLink(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	first := loginLinkRE.FindString(s.proc.Output())
	require.NotEmpty(t, first, "up printed no sign-in link:\n%s", s.proc.Output())
	ck := openSignIn(t, first)

	req, err := http.NewRequest("GET", s.url+"/v1/whoami", nil)
	require.NoError(t, err)
	req.AddCookie(ck)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	s.cliOK("users", "add", "bob", "--role", "viewer")
	out := s.cliOK("users", "login-link", "bob")
	openSignIn(t, loginLinkRE.FindString(out))

	s.proc.Stop()
	s.start()
	again := loginLinkRE.FindString(s.proc.Output())
	require.NotEmpty(t, again, "a restart prints a link too:\n%s", s.proc.Output())
	require.NotEqual(t, first, again)
	openSignIn(t, again)
}
