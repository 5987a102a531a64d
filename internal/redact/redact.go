// Package redact keeps secret env values out of error text and box output.
//
// Backends pass error messages from the kernel or the Docker engine upward,
// and boxes print what they like; neither is ours, so nothing promises they
// never echo part of a box's environment. Masking the values at the
// boundary makes "secret values never reach errors or logs" a property of
// the code instead of a hope.
package redact

import (
	"cmp"
	"errors"
	"slices"
	"strings"
)

// MinLen is the shortest value that is masked wherever it appears. A
// shorter value ("1", "on") is masked only where it stands as a whole word
// (a whole line is one): masking every "a" would shred every message, and
// leaving "pw=ab" in clear would leak it.
const MinLen = 4

// Mask is what a secret value is replaced with.
const Mask = "[REDACTED]"

// public are the box contract's variables that identify rather than
// authenticate: masking them would hide which workspace an error is about.
// ORGPLANE_TOKEN and ORGPLANE_MANAGEMENT_TOKEN are not among them.
var public = map[string]bool{
	"ORGPLANE_URL": true, "ORGPLANE_MCP_URL": true, "ORGPLANE_WORKSPACE_ID": true,
	"ORGPLANE_GENERATION": true, "ORGPLANE_ENV_FINGERPRINT": true,
}

// Public reports whether an env variable of the box contract is public
// (not masked).
func Public(key string) bool { return public[key] }

// Values returns the values of env that are to be masked: all but the
// public contract variables' and empty ones.
func Values(env map[string]string) []string {
	vals := make([]string, 0, len(env))
	for k, v := range env {
		if v != "" && !public[k] {
			vals = append(vals, v)
		}
	}
	return vals
}

// String masks every env value in s (but the public contract variables').
func String(s string, env map[string]string) string {
	return Strings(s, Values(env))
}

// Strings masks every one of vals in s: values of at least MinLen bytes
// wherever they appear, shorter ones where they stand as a whole word.
// Overlapping and adjacent matches become one Mask.
func Strings(s string, vals []string) string {
	if s == "" || len(vals) == 0 {
		return s
	}
	// Longest first, so a value that contains another is masked whole.
	vals = slices.Clone(vals)
	slices.SortFunc(vals, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	vals = slices.Compact(vals)
	var hide []bool // hide[i]: byte i of s is part of a value
	for _, v := range vals {
		if v == "" {
			continue
		}
		for from := 0; from+len(v) <= len(s); {
			i := strings.Index(s[from:], v)
			if i < 0 {
				break
			}
			start, end := from+i, from+i+len(v)
			if len(v) >= MinLen || wholeWord(s, start, end) {
				if hide == nil {
					hide = make([]bool, len(s))
				}
				for j := start; j < end; j++ {
					hide[j] = true
				}
				from = end
			} else {
				from = start + 1
			}
		}
	}
	if hide == nil {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if !hide[i] {
			b.WriteByte(s[i])
			continue
		}
		b.WriteString(Mask)
		for i+1 < len(s) && hide[i+1] {
			i++
		}
	}
	return b.String()
}

func isWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// wholeWord reports whether s[start:end] is not part of a longer word.
func wholeWord(s string, start, end int) bool {
	return (start == 0 || !isWord(s[start-1]) || !isWord(s[start])) &&
		(end == len(s) || !isWord(s[end]) || !isWord(s[end-1]))
}

// Error returns err with every env value masked in its text. errors.Is
// still sees the original chain, but Unwrap is deliberately absent so the
// unmasked text cannot be reached by printing a wrapped cause.
func Error(err error, env map[string]string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	masked := String(msg, env)
	if masked == msg {
		return err
	}
	return &maskedError{msg: masked, cause: err}
}

type maskedError struct {
	msg   string
	cause error
}

func (e *maskedError) Error() string { return e.msg }

func (e *maskedError) Is(target error) bool { return errors.Is(e.cause, target) }
