package cli

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/orgplane/orgplane/internal/kubetest"
	"github.com/orgplane/orgplane/internal/server"
)

func TestKubeFlags(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a pod
	t.Setenv("KUBERNETES_SERVICE_PORT", "")

	// Not configured: the runtime is off, and a namespace alone is an error.
	var cfg server.Config
	require.NoError(t, (&kubeFlags{instance: "orgplane"}).apply(&cfg))
	require.Nil(t, cfg.Kube)
	require.ErrorContains(t, (&kubeFlags{namespace: "boxes", instance: "orgplane"}).apply(&cfg), "--kube-namespace needs --kubeconfig")

	// A kubeconfig: its context's namespace, unless the flag names one.
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, kubetest.WriteKubeconfig(path, &rest.Config{Host: "https://127.0.0.1:6443", BearerToken: "t"}, "from-context"))
	require.NoError(t, (&kubeFlags{kubeconfig: path, instance: "i1"}).apply(&cfg))
	require.NotNil(t, cfg.Kube)
	require.Equal(t, "from-context", cfg.Kube.Namespace)
	require.Equal(t, "i1", cfg.Kube.Instance)
	require.NoError(t, (&kubeFlags{kubeconfig: path, namespace: "boxes", instance: "i1"}).apply(&cfg))
	require.Equal(t, "boxes", cfg.Kube.Namespace)

	require.ErrorContains(t, (&kubeFlags{kubeconfig: filepath.Join(t.TempDir(), "missing"), instance: "i1"}).apply(&cfg), "--kubeconfig")
}
