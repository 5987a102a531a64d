package propagation_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
	"github.com/orgplane/orgplane/internal/kubetest"
	"github.com/orgplane/orgplane/internal/pgtest"
	"github.com/orgplane/orgplane/internal/provision/provisiontest"
)

// TestKubeReplicasKillOneMidFanOut runs two `orgplane serve` replicas on
// one Postgres, both with the kubernetes runtime on one real API server
// (as the ServiceAccount bound to the Role of deploy/kubernetes), and
// kills one (kill -9) in the middle of a global rotation across kubernetes
// boxes: every workspace ends with exactly one pod, of the next
// generation, running the new value (nothing lost), restarted exactly once
// for the change (nothing doubled); the platform is untouched.
func TestKubeReplicasKillOneMidFanOut(t *testing.T) {
	t.Parallel()
	const n = 24
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	const ns = "orgplane"
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	dir := "../../deploy/kubernetes"
	require.NoError(t, c.Apply(ctx, filepath.Join(dir, "serviceaccount.yaml"), filepath.Join(dir, "rbac.yaml")))
	sa, err := c.ServiceAccountConfig(ctx, ns, "orgplane")
	require.NoError(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, kubetest.WriteKubeconfig(kubeconfig, sa, ns))
	const image = "orgplane:replicas"
	c.StartKubelet(t, kubetest.KubeletConfig{Namespace: ns, Images: map[string]string{image: e2etest.Binary(t)}})

	// Boxes reach the control plane through one address that either
	// replica answers, as through a Service in a cluster: a box started by
	// the replica that dies keeps heartbeating through the other.
	var target atomic.Pointer[url.URL]
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target.Load()) }})
	t.Cleanup(proxy.Close)
	registerURL(proxy.URL)

	dsn := pgtest.URL(t)
	key := masterKey(t)
	org := createOrg(t, dsn, key)
	flags := []string{"--advertise-url", proxy.URL, "--coalesce-window", "300ms", "--max-concurrent-restarts", "4", "--max-concurrent-restarts-per-org", "4",
		"--job-lease", "4s", "--supervision-lease", "4s",
		"--kubeconfig", kubeconfig, "--kube-instance", "replicas-" + provisiontest.RandomID(t)}
	a := serve(t, dsn, key, org.AdminToken, flags...)
	a.boxURL = proxy.URL
	u, err := url.Parse(a.url)
	require.NoError(t, err)
	target.Store(u)
	a.waitWS(org.PlatformID, 30*time.Second, "platform running", func(w client.Workspace) bool { return w.Status == "running" })
	b := serve(t, dsn, key, org.AdminToken, flags...)
	b.boxURL = proxy.URL
	if u, err = url.Parse(b.url); err == nil {
		target.Store(u) // b outlives a
	}

	spec := mustJSON(t, map[string]any{"image": image, "args": []string{"agent"}})
	var ids []string
	for i := range n {
		w, err := b.admin.CreateWorkspace(bg, client.CreateWorkspace{Name: fmt.Sprintf("kube%02d", i), Runtime: "kubernetes", Spec: spec})
		require.NoError(t, err)
		ids = append(ids, w.ID)
	}
	b.waitAll(ids, 90*time.Second, "kubernetes boxes running", func(w client.Workspace) bool { return w.Status == "running" })
	platform := b.get(org.PlatformID)

	value := randomValue(t)
	written := time.Now()
	res, err := b.admin.SetSecret(bg, "", "ROTATED_KEY", value, false)
	require.NoError(t, err)
	ds := decisionsByWS(res)
	require.Equal(t, "platform_root", ds[org.PlatformID].Reason)
	for _, id := range ids {
		require.Equal(t, "restart", ds[id].Action, id)
	}
	// Kill replica a once some, not all, restarts are done.
	var done int
	eventually(t, 90*time.Second, func() bool {
		done = 0
		for _, w := range b.snapshot(ids) {
			if w.Generation >= 2 && w.Status == "running" {
				done++
			}
		}
		return done >= 3
	}, func() string { return fmt.Sprintf("only %d restarts done", done) })
	a.proc.Kill()
	t.Logf("killed replica a with %d of %d restarts done, %s after the write", done, n, time.Since(written).Round(time.Millisecond))
	require.Less(t, done, n, "the fan-out finished before the kill; kill earlier")

	final := b.waitAll(ids, 3*time.Minute, "rotated", func(w client.Workspace) bool {
		return w.Status == "running" && w.Generation >= 2 && !w.Stale
	})
	t.Logf("rotation of %d kubernetes boxes done %s after the write, across the kill", n, time.Since(written).Round(time.Millisecond))
	pods, err := c.Client.CoreV1().Pods(ns).List(bg, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=orgplane"})
	require.NoError(t, err)
	byWS := map[string][]corev1.Pod{}
	for _, p := range pods.Items {
		byWS[p.Labels["orgplane.io/workspace"]] = append(byWS[p.Labels["orgplane.io/workspace"]], p)
	}
	boxes := scanBoxes(proxy.URL)
	for _, id := range ids {
		require.EqualValues(t, 2, final[id].Generation, "workspace %s restarted exactly once", id)
		require.Len(t, byWS[id], 1, "workspace %s: one pod", id)
		require.Equal(t, "2", byWS[id][0].Labels["orgplane.io/generation"], id)
		require.Len(t, boxes[id], 1, "workspace %s: one box process", id)
		require.True(t, boxes[id][0].env["ROTATED_KEY"] == value, "workspace %s runs the new value", id) // never print it
		ok := 0
		for _, j := range b.restarts(id) {
			if j.Automatic && j.State == "succeeded" {
				ok++
			}
		}
		require.Equal(t, 1, ok, "workspace %s: one succeeded restart for the change", id)
	}
	after := b.get(org.PlatformID)
	require.Equal(t, platform.Generation, after.Generation, "the platform was not restarted")
	require.True(t, after.Stale)
}
