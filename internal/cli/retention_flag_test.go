package cli

import (
	"context"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/server"
)

func TestRetentionFlag(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a pod
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	t.Setenv("ORGPLANE_RETENTION", "")
	parse := func(args ...string) (server.Config, error) {
		var rf runtimeFlags
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		rf.add(fs)
		require.NoError(t, fs.Parse(append([]string{"--docker", "off"}, args...)))
		var cfg server.Config
		err := rf.apply(context.Background(), &cfg, false)
		return cfg, err
	}
	cfg, err := parse()
	require.NoError(t, err)
	require.Equal(t, core.DefaultRetention, cfg.Runtime.Retention, "30 days by default")
	cfg, err = parse("--retention", "720h")
	require.NoError(t, err)
	require.Equal(t, 720*time.Hour, cfg.Runtime.Retention)
	cfg, err = parse("--retention", "0")
	require.NoError(t, err)
	require.Negative(t, cfg.Runtime.Retention, "0 keeps everything")
	_, err = parse("--retention", "30m")
	require.ErrorContains(t, err, "--retention 30m0s: must be 0 (keep everything) or at least 1h")

	t.Setenv("ORGPLANE_RETENTION", "48h")
	cfg, err = parse()
	require.NoError(t, err)
	require.Equal(t, 48*time.Hour, cfg.Runtime.Retention, "the env var's twin")
}
