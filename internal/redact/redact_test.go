package redact

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestError(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TOKEN": "hunter22", "LONG": "hunter22-and-more", "ORGPLANE_GENERATION": "3", "PIN": "7"}
	err := fmt.Errorf("exec failed for hunter22-and-more and hunter22 gen 3 pin 7 at 17: %w", fs.ErrNotExist)

	got := Error(err, env)
	require.Equal(t, "exec failed for [REDACTED] and [REDACTED] gen 3 pin [REDACTED] at 17: file does not exist", got.Error())
	require.ErrorIs(t, got, fs.ErrNotExist)
	require.Nil(t, errors.Unwrap(got))

	plain := errors.New("nothing secret here")
	require.Same(t, plain, Error(plain, env))
	require.NoError(t, Error(nil, env))
}

func TestStrings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		vals     []string
		want     string
	}{
		{"long anywhere", "xxhunter2yy", []string{"hunter2"}, "xx[REDACTED]yy"},
		{"short as a word", "pw=ab ok", []string{"ab"}, "pw=[REDACTED] ok"},
		{"short as a line", "a\nab\nabc", []string{"ab"}, "a\n[REDACTED]\nabc"},
		{"short inside a word stays", "about cab", []string{"ab"}, "about cab"},
		{"one character", "a b c bad", []string{"b"}, "a [REDACTED] c bad"},
		{"overlapping merge", "secretsecret", []string{"secret", "tsec"}, "[REDACTED]"},
		{"contained masked whole", "abcdefgh", []string{"cdef", "abcdefgh"}, "[REDACTED]"},
		{"the mask text itself", "REDACTED", []string{"REDACTED"}, "[REDACTED]"},
		{"empty value ignored", "abc", []string{""}, "abc"},
		{"punctuation value", "x=!@ y", []string{"!@"}, "x=[REDACTED] y"},
		{"nothing to do", "plain", nil, "plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Strings(tc.in, tc.vals))
		})
	}
}

func TestStringMasksTokensNotIDs(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ORGPLANE_TOKEN": "op_workspace_t1_SECRET", "ORGPLANE_WORKSPACE_ID": "w123",
		"ORGPLANE_GENERATION": "3", "PIN": "42", "ORGPLANE_MANAGEMENT_TOKEN": "op_admin_t2_X"}
	got := String("token op_workspace_t1_SECRET mgmt op_admin_t2_X ws w123 gen 3 pin 42 port 4242", env)
	require.Equal(t, "token [REDACTED] mgmt [REDACTED] ws w123 gen 3 pin [REDACTED] port 4242", got)
}
