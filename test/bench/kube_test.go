package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/e2etest"
	"github.com/orgplane/orgplane/internal/kubetest"
	"github.com/orgplane/orgplane/internal/provision"
	kubeprov "github.com/orgplane/orgplane/internal/provision/kubernetes"
	"github.com/orgplane/orgplane/internal/testenv"
)

// kubeBench is an in-process control plane whose kubernetes boxes run on a
// real API server, through the test kubelet, as the reference agent; calls
// counts the provisioner's API calls (watches aside).
type kubeBench struct {
	*testenv.Env
	calls *atomic.Int64
	spec  json.RawMessage
}

func kubeEnv(b *testing.B, rt core.RuntimeConfig) *kubeBench {
	b.Helper()
	c := kubetest.Start(b)
	const ns = "boxes"
	_, err := c.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(b, err)
	c.StartKubelet(b, kubetest.KubeletConfig{Namespace: ns, Images: map[string]string{"orgplane:bench": e2etest.Binary(b)}})
	var calls atomic.Int64
	cfg := rest.CopyConfig(c.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return countingTransport{rt, &calls}
	})
	kc, err := kubernetes.NewForConfig(cfg)
	require.NoError(b, err)
	kp, err := kubeprov.New(kubeprov.Config{Client: kc, Namespace: ns, Instance: "bench", StopGrace: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(b, err)
	b.Cleanup(func() { kp.Close() })
	e := testenv.New(b, testenv.Options{Runtime: rt, Provisioners: map[string]provision.Provisioner{provision.RuntimeKube: kp}})
	b.Cleanup(func() { e2etest.KillAllBoxesUnder(e.URL) })
	spec, _ := json.Marshal(map[string]any{"image": "orgplane:bench", "args": []string{"agent"}, "ready_after_seconds": 600})
	return &kubeBench{Env: e, calls: &calls, spec: spec}
}

type countingTransport struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Query().Get("watch") != "true" {
		c.n.Add(1)
	}
	return c.rt.RoundTrip(r)
}

// BenchmarkKubeBox: provision (create → healthy by heartbeat) and explicit
// restart (request → new generation healthy) of one kubernetes box running
// the reference agent through the test kubelet, with the API calls each
// restart makes.
func BenchmarkKubeBox(b *testing.B) {
	e := kubeEnv(b, core.RuntimeConfig{PollInterval: 50 * time.Millisecond, ProvisionTimeout: 15 * time.Minute})
	events, cancel := e.Service.Events().Subscribe(e.Org.Org.ID)
	defer cancel()
	ctx := context.Background()
	b.Run("provision", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("k%d", seq.Add(1)), Runtime: "kubernetes", Spec: e.spec})
			require.NoError(b, err)
			waitHealthy(b, e.Env, events, w.ID, 1)
		}
	})
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "r", Runtime: "kubernetes", Spec: e.spec})
	require.NoError(b, err)
	waitHealthy(b, e.Env, events, w.ID, 1)
	gen := int64(1)
	b.Run("restart", func(b *testing.B) {
		before := e.calls.Load()
		for i := 0; i < b.N; i++ {
			_, err := e.Admin.RestartWorkspace(ctx, w.ID, "bench")
			require.NoError(b, err)
			gen++
			waitHealthy(b, e.Env, events, w.ID, gen)
		}
		b.ReportMetric(float64(e.calls.Load()-before)/float64(b.N), "api-calls/restart")
	})
}

// BenchmarkKubeRotation200: one global secret change across 200 running
// kubernetes workspaces (reference agents through the test kubelet) with
// the restart cap at 8: lag p50/p99, whole fan-out, its ratio to the bare
// cost (200 restarts / 8 in parallel × one restart), API calls per restart.
func BenchmarkKubeRotation200(b *testing.B) {
	rt := core.RuntimeConfig{PollInterval: 50 * time.Millisecond, MaxConcurrentRestarts: 8, MaxConcurrentRestartsPerOrg: 8,
		CoalesceWindow: 100 * time.Millisecond, Jitter: 100 * time.Millisecond, ProvisionTimeout: 15 * time.Minute}
	e := kubeEnv(b, rt)
	events, cancel := e.Service.Events().Subscribe(e.Org.Org.ID)
	defer cancel()
	ctx := context.Background()
	var ids []string
	for j := 0; j < 200; j++ {
		w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("w%03d", j), Runtime: "kubernetes", Spec: e.spec})
		require.NoError(b, err)
		ids = append(ids, w.ID)
	}
	gen := map[string]int64{}
	for _, id := range ids {
		waitHealthy(b, e.Env, events, id, 1)
		gen[id] = 1
	}
	var single []time.Duration
	for k := 0; k < 5; k++ {
		t0 := time.Now()
		_, err := e.Admin.RestartWorkspace(ctx, ids[k], "bare cost")
		require.NoError(b, err)
		gen[ids[k]]++
		waitHealthy(b, e.Env, events, ids[k], gen[ids[k]])
		single = append(single, time.Since(t0))
	}
	bare := percentile(single, 0.5)
	actx := auth.WithPrincipal(ctx, auth.Principal{Kind: auth.KindAdmin, OrgID: e.Org.Org.ID, TokenID: e.Org.Token.ID})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := e.calls.Load()
		t0 := time.Now()
		res, err := e.Service.SetSecret(actx, "", "ROTATED", fmt.Sprintf("v%d", i), false)
		require.NoError(b, err)
		restarts := waitRestarted(b, e.Env, events, res.Decisions, gen)
		total := time.Since(t0)
		calls := e.calls.Load() - before
		lags := restartLags(b, e.Env, ids, t0)
		b.ReportMetric(percentile(lags, 0.5).Seconds(), "lag-p50-s")
		b.ReportMetric(percentile(lags, 0.99).Seconds(), "lag-p99-s")
		b.ReportMetric(total.Seconds(), "total-s")
		b.ReportMetric(bare.Seconds()*1000, "single-restart-ms")
		b.ReportMetric(total.Seconds()/(bare.Seconds()*200/8), "ratio-to-bare")
		b.ReportMetric(float64(calls)/float64(restarts), "api-calls/restart")
	}
}
