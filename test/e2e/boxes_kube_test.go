package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
	"github.com/orgplane/orgplane/internal/kubetest"
	"github.com/orgplane/orgplane/internal/provision/provisiontest"
)

// kubeEnv is a real API server with the namespace, ServiceAccount and Role
// of deploy/kubernetes, a test kubelet that runs the orgplane binary as the
// image "orgplane:e2e", and a control plane (`orgplane up`) whose
// kubernetes runtime authenticates as that ServiceAccount.
type kubeEnv struct {
	*server
	cluster *kubetest.Cluster
	ns      string
}

const kubeImage = "orgplane:e2e"

func startKube(t *testing.T, flags ...string) *kubeEnv {
	t.Helper()
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
	c.StartKubelet(t, kubetest.KubeletConfig{Namespace: ns, Images: map[string]string{kubeImage: e2etest.Binary(t)}})
	flags = append([]string{"--kubeconfig", kubeconfig, "--kube-instance", "e2e-" + provisiontest.RandomID(t)}, flags...)
	return &kubeEnv{server: startServer(t, flags...), cluster: c, ns: ns}
}

func (e *kubeEnv) pods(t *testing.T, wsID string) []corev1.Pod {
	t.Helper()
	list, err := e.cluster.Client.CoreV1().Pods(e.ns).List(bg, metav1.ListOptions{LabelSelector: "orgplane.io/workspace=" + wsID})
	require.NoError(t, err)
	return list.Items
}

func (e *kubeEnv) secrets(t *testing.T, wsID string) []corev1.Secret {
	t.Helper()
	list, err := e.cluster.Client.CoreV1().Secrets(e.ns).List(bg, metav1.ListOptions{LabelSelector: "orgplane.io/workspace=" + wsID})
	require.NoError(t, err)
	return list.Items
}

// onlyPod waits until the workspace has exactly one pod, of generation gen.
func (e *kubeEnv) onlyPod(t *testing.T, wsID string, gen int64) corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, 30*time.Second, func() bool {
		pods = e.pods(t, wsID)
		return len(pods) == 1 && pods[0].Labels["orgplane.io/generation"] == fmt.Sprint(gen) && len(e.secrets(t, wsID)) == 1
	}, func() string {
		return fmt.Sprintf("want one pod (and Secret) of generation %d, have %d pods", gen, len(pods))
	})
	return pods[0]
}

// TestKubernetes runs kubernetes boxes through the whole control plane,
// against a real API server: provision and heartbeat, a global secret
// change restarting them per the rules with the platform untouched, the
// failures that end in `failed` with their reason, and adoption after a
// kill -9 of the control plane.
func TestKubernetes(t *testing.T) {
	t.Parallel()
	e := startKube(t, "--provision-timeout", "20s", "--max-provision-retries", "1")
	agent := spec(t, map[string]any{"image": kubeImage, "args": []string{"agent"}})

	// Provision: a pod of generation 1 whose agent heartbeats.
	value := secretValue(t)
	_, err := e.admin.SetSecret(bg, "", "E2E_GLOBAL", value, false)
	require.NoError(t, err)
	began := time.Now()
	w := e.create(client.CreateWorkspace{Name: "kagent", Runtime: "kubernetes", Spec: agent})
	e.waitStatus(w.ID, "running", 1, 30*time.Second)
	t.Logf("provision to healthy (heartbeat) through the test kubelet: %s", time.Since(began).Round(time.Millisecond))
	pod1 := e.onlyPod(t, w.ID, 1)
	assert.Equal(t, e.orgID, pod1.Labels["orgplane.io/org"])
	assert.Equal(t, corev1.RestartPolicyNever, pod1.Spec.RestartPolicy)
	raw, err := json.Marshal(pod1)
	require.NoError(t, err)
	assert.False(t, strings.Contains(string(raw), value), "a secret value in the pod object")
	sec := e.secrets(t, w.ID)[0]
	assert.True(t, string(sec.Data["E2E_GLOBAL"]) == value, "the global secret is in the box's Secret") // never print it
	eventually(t, 15*time.Second, func() bool {
		got := e.get(w.ID)
		return got.Status == "running" && got.LastError == ""
	}, func() string { return "not running" })
	platformBefore := e.get(e.platformID)

	// A global secret change restarts the kubernetes box; the platform is
	// skipped (platform_root) and its box untouched.
	began = time.Now()
	res, err := e.admin.SetSecret(bg, "", "E2E_GLOBAL", secretValue(t), false)
	require.NoError(t, err)
	reasons := map[string]string{}
	for _, d := range res.Decisions {
		reasons[d.WorkspaceID] = d.Action + ":" + d.Reason
	}
	assert.Equal(t, "restart:restart_queued", reasons[w.ID])
	assert.Equal(t, "skip:platform_root", reasons[e.platformID])
	e.waitStatus(w.ID, "running", 2, 60*time.Second)
	t.Logf("global secret write to the new box healthy (coalesce window included): %s", time.Since(began).Round(time.Millisecond))
	pod2 := e.onlyPod(t, w.ID, 2)
	assert.NotEqual(t, pod1.UID, pod2.UID)
	platformAfter := e.get(e.platformID)
	assert.Equal(t, platformBefore.Generation, platformAfter.Generation, "the platform box was not restarted")
	assert.True(t, platformAfter.Stale, "the platform is stale instead")

	// Logs come from pods/log.
	var logs []byte
	eventually(t, 10*time.Second, func() bool {
		logs, err = e.admin.Logs(bg, w.ID, 10)
		return err == nil && len(logs) > 0
	}, func() string { return fmt.Sprintf("logs: %q (err %v)", logs, err) })

	// A pod that fails (phase Failed) ends failed with its reason; an image
	// that never pulls too, once the retries are spent.
	crash := e.create(client.CreateWorkspace{Name: "kcrash", Runtime: "kubernetes",
		Spec: spec(t, map[string]any{"image": kubeImage, "args": []string{"no-such-command"}, "ready_after_seconds": 5})})
	pull := e.create(client.CreateWorkspace{Name: "kpull", Runtime: "kubernetes",
		Spec: spec(t, map[string]any{"image": "registry.invalid/never:1"})})
	got := e.waitGaveUp(crash.ID, 60*time.Second)
	assert.Contains(t, got.LastError, "exited with code")
	got = e.waitGaveUp(pull.ID, 60*time.Second)
	assert.Contains(t, got.LastError, "ImagePullBackOff")
	assert.Empty(t, e.pods(t, pull.ID), "no pod is left of an image that never pulls")

	// kill -9 of the control plane: the pod keeps running and is adopted.
	e.proc.Kill()
	e.start()
	e.waitStatus(w.ID, "running", 2, 30*time.Second)
	adopted := e.onlyPod(t, w.ID, 2)
	assert.Equal(t, pod2.UID, adopted.UID, "the same pod, adopted")
	assert.Zero(t, e.actions(w.ID)["box.stop"], "nothing was stopped on the way")

	// Delete removes pod and Secret together.
	_, err = e.admin.DeleteWorkspace(bg, w.ID, false)
	require.NoError(t, err)
	eventually(t, 30*time.Second, func() bool { return len(e.pods(t, w.ID)) == 0 && len(e.secrets(t, w.ID)) == 0 },
		func() string { return "pod or Secret left after delete" })
}
