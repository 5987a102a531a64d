package kubetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// client-go's transport cache keeps idle connections' goroutines
		// until the process ends.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func TestClusterServesWithRBACAndStopsInOrder(t *testing.T) {
	c := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	v, err := c.Client.Discovery().ServerVersion()
	require.NoError(t, err)
	require.Equal(t, KubeVersion, v.GitVersion)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubetest"}}
	_, err = c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	require.NoError(t, err)

	// RBAC is on: a user in no group may not list pods...
	cfg, err := c.UserConfig("nobody")
	require.NoError(t, err)
	nobody, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	_, err = nobody.CoreV1().Pods("kubetest").List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "want forbidden, got %v", err)

	// ...and a service account authenticates with an issued token.
	_, err = c.Client.CoreV1().ServiceAccounts("kubetest").Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "sa"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	saCfg, err := c.ServiceAccountConfig(ctx, "kubetest", "sa")
	require.NoError(t, err)
	sa, err := kubernetes.NewForConfig(saCfg)
	require.NoError(t, err)
	_, err = sa.CoreV1().Secrets("kubetest").List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "want forbidden, got %v", err)
	require.Contains(t, err.Error(), "system:serviceaccount:kubetest:sa")

	start := time.Now()
	c.Stop()
	t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
	for _, comp := range []*component{c.apiserver, c.etcd} {
		select {
		case <-comp.exited:
		default:
			t.Fatalf("%s still running after Stop", comp.name)
		}
	}
	c.Stop() // idempotent
}

func TestRequireBinariesSkipsWithoutCache(t *testing.T) {
	t.Setenv(EnvCache, t.TempDir())
	t.Setenv(EnvRequireKube, "")
	_, _, err := Binaries()
	require.ErrorContains(t, err, "scripts/kube-binaries.sh")
	done := make(chan bool)
	go func() {
		defer close(done)
		r := &skipRecorder{TB: t}
		defer func() { done <- r.skipped }()
		defer func() { _ = recover() }()
		RequireBinaries(r)
	}()
	require.True(t, <-done, "skipped")
}

// skipRecorder observes Skipf without ending the test that checks it.
type skipRecorder struct {
	testing.TB
	skipped bool
}

func (r *skipRecorder) Helper() {}
func (r *skipRecorder) Skipf(string, ...any) {
	r.skipped = true
	panic("skip")
}
