package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/orgplane/orgplane/internal/kubetest"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/provisiontest"
)

// The tests below run against a real API server (internal/kubetest) with
// RBAC on. The provisioner authenticates as the ServiceAccount of
// deploy/kubernetes, bound to the Role there, so each test also proves the
// Role sufficient. A test kubelet runs the pods as local processes.

const (
	manifests = "../../../deploy/kubernetes"
	boxImage  = "testbox:1"
	ns        = "orgplane" // the manifests' namespace
)

// readManifests decodes every object of the named files.
func readManifests(t *testing.T, names ...string) []runtime.Object {
	t.Helper()
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join(manifests, n))
	}
	objs, err := kubetest.ReadManifests(paths...)
	require.NoError(t, err)
	return objs
}

type realEnv struct {
	cluster  *kubetest.Cluster
	kubelet  *kubetest.Kubelet
	sa       k8s.Interface // as the orgplane ServiceAccount
	saConfig *rest.Config
	bin      string
	logs     *syncBuffer
}

func startReal(t *testing.T) *realEnv {
	t.Helper()
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	for _, obj := range readManifests(t, "serviceaccount.yaml", "rbac.yaml") {
		require.NoError(t, kubetest.Create(ctx, c.Client, obj, metav1.CreateOptions{}))
	}
	cfg, err := c.ServiceAccountConfig(ctx, ns, "orgplane")
	require.NoError(t, err)
	sa, err := k8s.NewForConfig(cfg)
	require.NoError(t, err)
	bin := provisiontest.TestBox(t)
	k := c.StartKubelet(t, kubetest.KubeletConfig{Namespace: ns, Images: map[string]string{boxImage: bin},
		NodeLabels: map[string]string{"pool": "agents"}})
	return &realEnv{cluster: c, kubelet: k, sa: sa, saConfig: cfg, bin: bin, logs: &syncBuffer{}}
}

func (e *realEnv) prov(t *testing.T, instance string) *Provisioner {
	t.Helper()
	p, err := New(Config{Client: e.sa, Namespace: ns, Instance: instance, StopGrace: 2 * time.Second,
		CallTimeout: 20 * time.Second, Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

func boxSpecJSON(t *testing.T, extra map[string]any, args ...string) json.RawMessage {
	t.Helper()
	m := map[string]any{"image": boxImage, "args": args}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

func TestConformanceOnARealAPIServer(t *testing.T) {
	e := startReal(t)
	provisiontest.Conformance(t, provisiontest.Backend{
		New: func(t *testing.T) provision.Provisioner { return e.prov(t, "conformance") },
		Spec: func(t *testing.T, ws string, env map[string]string, args ...string) provision.Spec {
			return provision.Spec{OrgID: "org1", WorkspaceID: ws, Generation: 1, Image: boxImage, Env: env,
				RuntimeSpec: boxSpecJSON(t, nil, args...)}
		},
	})
	require.NotContains(t, e.logs.String(), "conformance-s3cr3t")
}

func TestOnARealAPIServer(t *testing.T) {
	e := startReal(t)
	p := e.prov(t, "real")
	ctx := context.Background()
	start := func(t *testing.T, ws string, raw json.RawMessage) (provision.Handle, error) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		spec := provision.Spec{OrgID: "org1", WorkspaceID: ws, Generation: 1, Image: boxImage, RuntimeSpec: raw,
			Env: map[string]string{"API_KEY": secretValue, "ORGPLANE_WORKSPACE_ID": ws}}
		var ks struct{ Image string }
		_ = json.Unmarshal(raw, &ks)
		spec.Image = ks.Image
		h, err := p.Start(sctx, spec)
		if err == nil {
			t.Cleanup(func() {
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				require.NoError(t, p.Stop(sctx, h))
			})
		}
		return h, err
	}
	noObjects := func(t *testing.T, ws string) {
		t.Helper()
		sel := LabelWorkspace + "=" + ws
		pods, err := e.cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		require.NoError(t, err)
		require.Empty(t, pods.Items)
		secrets, err := e.cluster.Client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		require.NoError(t, err)
		require.Empty(t, secrets.Items)
	}

	t.Run("env only in the Secret, secure defaults accepted", func(t *testing.T) {
		h, err := start(t, "ws-env", boxSpecJSON(t, map[string]any{"node_selector": map[string]string{"pool": "agents"},
			"resources": map[string]any{"limits": map[string]string{"memory": "64Mi"}}}, "-env", "API_KEY", "-leak", "API_KEY"))
		require.NoError(t, err)
		pod, err := e.cluster.Client.CoreV1().Pods(ns).Get(ctx, h.ID, metav1.GetOptions{})
		require.NoError(t, err)
		raw, err := json.Marshal(pod)
		require.NoError(t, err)
		require.NotContains(t, string(raw), secretValue)
		require.True(t, *pod.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem)
		require.Equal(t, "kubetest-node", pod.Spec.NodeName)
		var out []byte
		require.Eventually(t, func() bool {
			out, err = p.Logs(ctx, "ws-env", 0)
			require.NoError(t, err)
			return bytes.Contains(out, []byte("ready"))
		}, 30*time.Second, 50*time.Millisecond)
		require.Contains(t, string(out), "leak API_KEY=[REDACTED]\nenv API_KEY=set\n")
	})

	t.Run("a pod that fails ends the box with its exit code", func(t *testing.T) {
		h, err := start(t, "ws-fail", boxSpecJSON(t, nil, "-exit-after", "100ms", "-exit-code", "7"))
		require.NoError(t, err)
		select {
		case st := <-p.Wait(ctx, h):
			require.Equal(t, provision.State{Exited: true, ExitCode: 7, Reason: "exited with code 7"}, st)
		case <-time.After(30 * time.Second):
			t.Fatal("no end")
		}
		pod, err := e.cluster.Client.CoreV1().Pods(ns).Get(ctx, h.ID, metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, corev1.PodFailed, pod.Status.Phase)
	})

	t.Run("an image that never pulls fails the start and leaves nothing", func(t *testing.T) {
		_, err := start(t, "ws-image", json.RawMessage(`{"image":"registry.invalid/nope:1"}`))
		require.ErrorContains(t, err, "image registry.invalid/nope:1 cannot be pulled: ImagePullBackOff")
		require.NotContains(t, err.Error(), secretValue)
		noObjects(t, "ws-image")
	})

	t.Run("an unschedulable pod fails the start and leaves nothing", func(t *testing.T) {
		_, err := start(t, "ws-sched", boxSpecJSON(t, map[string]any{"node_selector": map[string]string{"pool": "gpu"}}))
		require.ErrorContains(t, err, "unschedulable: 0/1 nodes are available")
		noObjects(t, "ws-sched")
	})

	t.Run("stop is graceful and removes pod and Secret", func(t *testing.T) {
		h, err := start(t, "ws-stop", boxSpecJSON(t, nil, "-on-term", "exit"))
		require.NoError(t, err)
		began := time.Now()
		require.NoError(t, p.Stop(ctx, h))
		require.Less(t, time.Since(began), 2*time.Second+10*time.Second)
		noObjects(t, "ws-stop")
	})

	t.Run("API calls per box: two to start, two to stop", func(t *testing.T) {
		var mu sync.Mutex
		var calls []string
		cfg := rest.CopyConfig(e.saConfig)
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				if r.URL.Query().Get("watch") != "true" {
					mu.Lock()
					calls = append(calls, r.Method+" "+r.URL.Path)
					mu.Unlock()
				}
				return rt.RoundTrip(r)
			})
		})
		c, err := k8s.NewForConfig(cfg)
		require.NoError(t, err)
		cp, err := New(Config{Client: c, Namespace: ns, Instance: "counted", StopGrace: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
		require.NoError(t, err)
		defer cp.Close()
		_, err = cp.List(ctx) // the informer's first list
		require.NoError(t, err)
		mu.Lock()
		calls = nil
		mu.Unlock()
		h, err := cp.Start(ctx, provision.Spec{OrgID: "org1", WorkspaceID: "ws-count", Generation: 1, Image: boxImage, RuntimeSpec: boxSpecJSON(t, nil)})
		require.NoError(t, err)
		st, err := cp.Inspect(ctx, h)
		require.NoError(t, err)
		require.True(t, st.Running)
		require.NoError(t, cp.Stop(ctx, h))
		mu.Lock()
		defer mu.Unlock()
		t.Logf("API calls for start, inspect and stop: %v", calls)
		require.Len(t, calls, 4, "%v", calls)
	})

	t.Run("the Role allows nothing else", func(t *testing.T) {
		_, err := e.sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		require.True(t, apierrors.IsForbidden(err), "list secrets: %v", err)
		_, err = e.sa.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		require.True(t, apierrors.IsForbidden(err), "pods of another namespace: %v", err)
		_, err = e.sa.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
		require.True(t, apierrors.IsForbidden(err), "create configmap: %v", err)
		h, err := start(t, "ws-rbac", boxSpecJSON(t, nil))
		require.NoError(t, err)
		pod, err := e.sa.CoreV1().Pods(ns).Get(ctx, h.ID, metav1.GetOptions{})
		require.NoError(t, err)
		pod.Labels["x"] = "y"
		_, err = e.sa.CoreV1().Pods(ns).Update(ctx, pod, metav1.UpdateOptions{})
		require.True(t, apierrors.IsForbidden(err), "update pod: %v", err)
	})
	require.NotContains(t, e.logs.String(), secretValue)
}

func TestManifestsAreValidObjects(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	entries, err := os.ReadDir(manifests)
	require.NoError(t, err)
	var files []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") {
			files = append(files, e.Name())
		}
	}
	objs := readManifests(t, files...)
	require.GreaterOrEqual(t, len(objs), 7)
	for _, dry := range []bool{true, false} {
		opts := metav1.CreateOptions{FieldValidation: "Strict"}
		if dry {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		for _, obj := range objs {
			require.NoError(t, kubetest.Create(ctx, c.Client, obj, opts), "%T (dry run %v)", obj, dry)
		}
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
