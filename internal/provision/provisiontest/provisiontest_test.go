package provisiontest

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestBuildStaticBinaryIsStaticAndCached(t *testing.T) {
	a := TestBox(t)
	b := TestBox(t)
	require.NotEqual(t, a, b, "each caller gets its own path")

	f, err := elf.Open(a)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "a static binary has no dynamic loader")
	}
	sa, err := os.Stat(a)
	require.NoError(t, err)
	sb, err := os.Stat(b)
	require.NoError(t, err)
	require.True(t, os.SameFile(sa, sb) || sa.Size() == sb.Size(), "built once, then reused")
	require.NotZero(t, sa.Mode()&0o100, "executable")
}

// recorder stands in for a testing.TB to observe Skip and Fatal, which
// would otherwise end the test that checks them.
type recorder struct {
	testing.TB
	cleanups []func()
	skipped  string
	fatal    string
}

type stop struct{}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	panic(stop{})
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	panic(stop{})
}

func runRecorded(t *testing.T, f func(testing.TB)) *recorder {
	r := &recorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != nil && v != (stop{}) {
				panic(v)
			}
		}()
		f(r)
	}()
	for _, c := range r.cleanups {
		c()
	}
	return r
}

func TestRequireDockerSkipsOrFailsWithoutAnEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-engine.sock")

	t.Setenv(EnvRequireDocker, "")
	r := runRecorded(t, func(tb testing.TB) { RequireDocker(tb) })
	require.Contains(t, r.skipped, "Docker engine unreachable")
	require.Empty(t, r.fatal)

	t.Setenv(EnvRequireDocker, "1")
	r = runRecorded(t, func(tb testing.TB) { RequireDocker(tb) })
	require.Contains(t, r.fatal, "Docker engine unreachable")
	require.Empty(t, r.skipped)
}

func TestDockerImageIsBuiltThenRemoved(t *testing.T) {
	c := RequireDocker(t)
	var image string
	t.Run("build", func(t *testing.T) {
		image = DockerImage(t, TestBox(t))
		require.Contains(t, image, "orgplane-provisiontest/box:")
		_, err := c.ImageInspect(context.Background(), image)
		require.NoError(t, err)
	})
	_, err := c.ImageInspect(context.Background(), image)
	require.True(t, cerrdefs.IsNotFound(err), "the image is removed with its test: %v", err)
}
