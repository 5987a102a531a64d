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
	env := map[string]string{"TOKEN": "hunter22", "LONG": "hunter22-and-more", "GEN": "3"}
	err := fmt.Errorf("exec failed for hunter22-and-more and hunter22 gen 3: %w", fs.ErrNotExist)

	got := Error(err, env)
	require.Equal(t, "exec failed for [REDACTED] and [REDACTED] gen 3: file does not exist", got.Error())
	require.ErrorIs(t, got, fs.ErrNotExist)
	require.Nil(t, errors.Unwrap(got))

	plain := errors.New("nothing secret here")
	require.Same(t, plain, Error(plain, env))
	require.NoError(t, Error(nil, env))
}
