package process_test

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/process"
	"github.com/orgplane/orgplane/internal/provision/provisiontest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	bin := provisiontest.TestBox(t)
	dir := t.TempDir()
	logs := &syncBuffer{}
	provisiontest.Conformance(t, provisiontest.Backend{
		New: func(t *testing.T) provision.Provisioner {
			p, err := process.New(process.Config{LogDir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, p.Close()) })
			return p
		},
		Spec: func(t *testing.T, ws string, env map[string]string, args ...string) provision.Spec {
			return provision.Spec{OrgID: "org1", WorkspaceID: ws, Generation: 1, Command: append([]string{bin}, args...), Env: env}
		},
	})
}
