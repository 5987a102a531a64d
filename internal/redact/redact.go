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

// MinLen is the shortest value that is masked. Shorter values ("1", "on")
// are not meaningfully secret, and masking them would shred every message.
const MinLen = 4

// Mask is what a secret value is replaced with.
const Mask = "[REDACTED]"

// public are the box contract's variables that identify rather than
// authenticate: masking them would hide which workspace an error is about.
// ORGPLANE_TOKEN is not among them.
var public = map[string]bool{
	"ORGPLANE_URL": true, "ORGPLANE_WORKSPACE_ID": true, "ORGPLANE_GENERATION": true, "ORGPLANE_ENV_FINGERPRINT": true,
}

// String replaces every env value of at least MinLen bytes in s with Mask
// (except the values of the public contract variables).
func String(s string, env map[string]string) string {
	vals := make([]string, 0, len(env))
	for k, v := range env {
		if len(v) >= MinLen && !public[k] {
			vals = append(vals, v)
		}
	}
	// Longest first, so a value that contains another is masked whole.
	slices.SortFunc(vals, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, v := range vals {
		s = strings.ReplaceAll(s, v, Mask)
	}
	return s
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
