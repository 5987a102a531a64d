package core

import "testing"

// The Origin rule of session writes: the advertise URL's origin or the
// request's own, compared as origins (scheme and host without case, a
// default port as none); anything else, "null" included, is cross-site.
func TestSameOrigin(t *testing.T) {
	const adv = "https://orgplane.example.com/"
	const own = "http://127.0.0.1:8080"
	cases := []struct {
		origin string
		want   bool
	}{
		{"https://orgplane.example.com", true},
		{"HTTPS://OrgPlane.Example.com", true},
		{"https://orgplane.example.com:443", true},
		{"http://127.0.0.1:8080", true},
		{"http://127.0.0.1:8081", false},
		{"https://127.0.0.1:8080", false},
		{"http://orgplane.example.com", false},
		{"https://orgplane.example.com:8443", false},
		{"https://orgplane.example.com.evil.example", false},
		{"https://evil.example", false},
		{"null", false},
		{"", false},
		{"https://orgplane.example.com/", false}, // browsers send no path
		{"https://orgplane.example.com/path", false},
		{"https://user@orgplane.example.com", false},
		{"file://orgplane.example.com", false},
		{"orgplane.example.com", false},
	}
	for _, c := range cases {
		if got := sameOrigin(c.origin, adv, own); got != c.want {
			t.Errorf("sameOrigin(%q) = %v, want %v", c.origin, got, c.want)
		}
	}
	if !sameOrigin("http://localhost", "http://localhost:80", "") {
		t.Error("a default port counts as none on both sides")
	}
	if sameOrigin("http://x", "", "") {
		t.Error("no advertise URL and no own origin: nothing is same-origin")
	}
}
