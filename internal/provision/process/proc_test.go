package process

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	// A command name with spaces and parentheses, as a box may choose.
	line := "4242 (my (evil) box) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 256\n"
	st, err := parseStat([]byte(line))
	require.NoError(t, err)
	require.Equal(t, procStat{state: 'S', pgrp: 4242, startTicks: 987654, exitCode: 256, hasExit: true}, st)
	require.False(t, st.zombie())

	_, err = parseStat([]byte("garbage"))
	require.Error(t, err)
	_, err = parseStat([]byte("1 (x) S 1 2"))
	require.Error(t, err)
}

func TestLastLines(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 10, "a\nb\nc\n"},
		{"a\nb\nc\n", 0, "a\nb\nc\n"},
		{"a\nb\nc\n", 1, "c\n"},
		{"", 5, ""},
		{"\n\n", 1, "\n"},
	} {
		require.Equal(t, tc.want, string(lastLines([]byte(tc.in), tc.n)), "%q n=%d", tc.in, tc.n)
	}
}
