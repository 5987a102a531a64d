package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/orgplane/orgplane/internal/provision"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const secretValue = "s3cr3t-value-that-must-not-leak"

// fakeEnv is a provisioner on the fake clientset, whose created pods get
// a uid and the status that podStatus gives (Running by default): the
// fake has no kubelet.
type fakeEnv struct {
	c    *fake.Clientset
	p    *Provisioner
	logs *syncBuffer

	mu        sync.Mutex
	podStatus corev1.PodStatus
}

// newFake starts a provisioner on a fake clientset. Reactors go in through
// react, before it starts: its informer reads the clientset's reactor chain
// from then on, and the chain is not safe to change beside it.
func newFake(t *testing.T, react ...func(c *fake.Clientset)) *fakeEnv {
	t.Helper()
	e := &fakeEnv{c: fake.NewClientset(), logs: &syncBuffer{},
		podStatus: corev1.PodStatus{Phase: corev1.PodRunning}}
	for _, r := range react {
		r(e.c)
	}
	e.c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		pod.UID = types.UID("uid-" + pod.Name)
		pod.Spec.NodeName = "node-1"
		e.mu.Lock()
		pod.Status = *e.podStatus.DeepCopy()
		e.mu.Unlock()
		return false, nil, nil
	})
	p, err := New(Config{Client: e.c, Namespace: "boxes", Instance: "test", StopGrace: time.Second,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	e.p = p
	return e
}

func (e *fakeEnv) spec(ws string, gen int64, raw string) provision.Spec {
	return provision.Spec{OrgID: "o1", WorkspaceID: ws, Generation: gen, Image: "box:1",
		Env:         map[string]string{"API_KEY": secretValue, "MODE": "fast", "ORGPLANE_WORKSPACE_ID": ws},
		PublicKeys:  []string{"MODE"},
		RuntimeSpec: json.RawMessage(raw),
	}
}

func TestPodAndSecretShapes(t *testing.T) {
	t.Parallel()
	e := newFake(t)
	ctx := context.Background()
	raw := `{"image":"box:1","command":["/box"],"args":["-lines","3"],"env":{"MODE":"fast"},
		"resources":{"requests":{"cpu":"100m"},"limits":{"memory":"64Mi"}},
		"node_selector":{"pool":"agents"},"tolerations":[{"key":"dedicated","value":"agents","effect":"NoSchedule"}],
		"image_pull_secrets":["regcred"]}`
	h, err := e.p.Start(ctx, e.spec("ws1", 3, raw))
	require.NoError(t, err)
	require.Equal(t, provision.Handle{Runtime: "kubernetes", WorkspaceID: "ws1", Generation: 3, ID: "orgplane-ws1-g3", StartedAt: h.StartedAt}, h)

	pod, err := e.c.CoreV1().Pods("boxes").Get(ctx, h.ID, metav1.GetOptions{})
	require.NoError(t, err)
	want := map[string]string{LabelManagedBy: "orgplane", LabelInstance: "test", LabelOrg: "o1", LabelWorkspace: "ws1", LabelGeneration: "3"}
	require.Equal(t, want, pod.Labels)
	require.Equal(t, "MODE", pod.Annotations[AnnotationPublicEnv])
	s := pod.Spec
	require.Equal(t, corev1.RestartPolicyNever, s.RestartPolicy)
	require.False(t, *s.AutomountServiceAccountToken)
	require.False(t, *s.EnableServiceLinks)
	require.Empty(t, s.ServiceAccountName)
	require.True(t, *s.SecurityContext.RunAsNonRoot)
	require.Equal(t, int64(DefaultUID), *s.SecurityContext.RunAsUser)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, s.SecurityContext.SeccompProfile.Type)
	require.Equal(t, map[string]string{"pool": "agents"}, s.NodeSelector)
	require.Equal(t, []corev1.Toleration{{Key: "dedicated", Operator: "Equal", Value: "agents", Effect: "NoSchedule"}}, s.Tolerations)
	require.Equal(t, []corev1.LocalObjectReference{{Name: "regcred"}}, s.ImagePullSecrets)
	require.Equal(t, int64(1), *s.TerminationGracePeriodSeconds)
	require.Len(t, s.Containers, 1)
	c := s.Containers[0]
	require.Equal(t, "box:1", c.Image)
	require.Equal(t, []string{"/box"}, c.Command)
	require.Equal(t, []string{"-lines", "3"}, c.Args)
	require.Empty(t, c.Env, "no env in the pod spec")
	require.Equal(t, []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: h.ID}}}}, c.EnvFrom)
	sc := c.SecurityContext
	require.False(t, *sc.AllowPrivilegeEscalation)
	require.False(t, *sc.Privileged)
	require.True(t, *sc.ReadOnlyRootFilesystem)
	require.True(t, *sc.RunAsNonRoot)
	require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	require.Empty(t, sc.Capabilities.Add)
	require.Equal(t, "100m", c.Resources.Requests.Cpu().String())
	require.Equal(t, "64Mi", c.Resources.Limits.Memory().String())
	podJSON, err := json.Marshal(pod)
	require.NoError(t, err)
	require.NotContains(t, string(podJSON), secretValue, "a secret value in the pod object")

	sec, err := e.c.CoreV1().Secrets("boxes").Get(ctx, h.ID, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, want, sec.Labels)
	require.Equal(t, []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: h.ID, UID: pod.UID}}, sec.OwnerReferences)
	require.True(t, *sec.Immutable)
	require.Equal(t, map[string][]byte{"API_KEY": []byte(secretValue), "MODE": []byte("fast"), "ORGPLANE_WORKSPACE_ID": []byte("ws1")}, sec.Data)

	st, err := e.p.Inspect(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Running)

	require.NoError(t, e.p.Stop(ctx, h))
	_, err = e.c.CoreV1().Pods("boxes").Get(ctx, h.ID, metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err))
	_, err = e.c.CoreV1().Secrets("boxes").Get(ctx, h.ID, metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "the Secret goes with its pod")
	require.NoError(t, e.p.Stop(ctx, h), "stop is idempotent")
	_, err = e.p.Inspect(ctx, h)
	require.ErrorIs(t, err, provision.ErrNotFound)
	require.NotContains(t, e.logs.String(), secretValue)
}

func TestServiceAccountMountsItsToken(t *testing.T) {
	t.Parallel()
	e := newFake(t)
	h, err := e.p.Start(context.Background(), e.spec("ws-sa", 1, `{"image":"box:1","service_account":"agent"}`))
	require.NoError(t, err)
	pod, err := e.c.CoreV1().Pods("boxes").Get(context.Background(), h.ID, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "agent", pod.Spec.ServiceAccountName)
	require.True(t, *pod.Spec.AutomountServiceAccountToken)
}

func TestPodNamesAreDNSLabels(t *testing.T) {
	t.Parallel()
	e := newFake(t)
	require.Equal(t, "orgplane-wabcdefghijklmnop-g7", e.p.PodName("wabcdefghijklmnop", 7))
	a, b := e.p.PodName("WS_1", 1), e.p.PodName("ws-1", 1)
	require.NotEqual(t, a, b, "folded ids stay apart")
	require.Regexp(t, `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, a)
	long := e.p.PodName(strings.Repeat("x", 200), 1)
	require.LessOrEqual(t, len(long), 63)
}

func TestStartFailuresRemoveThePodAndMaskValues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("secret refused", func(t *testing.T) {
		e := newFake(t, func(c *fake.Clientset) {
			c.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewBadRequest("data API_KEY=" + secretValue + " is odd")
			})
		})
		_, err := e.p.Start(ctx, e.spec("ws1", 1, `{"image":"box:1"}`))
		require.Error(t, err)
		require.NotContains(t, err.Error(), secretValue)
		require.Contains(t, err.Error(), "[REDACTED]")
		pods, _ := e.c.CoreV1().Pods("boxes").List(ctx, metav1.ListOptions{})
		require.Empty(t, pods.Items, "the pod of a failed start is removed")
	})

	t.Run("forbidden", func(t *testing.T) {
		e := newFake(t, func(c *fake.Clientset) {
			c.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x", errors.New("no RBAC"))
			})
		})
		_, err := e.p.Start(ctx, e.spec("ws1", 1, `{"image":"box:1"}`))
		require.ErrorContains(t, err, "forbidden")
		require.True(t, apierrors.IsForbidden(err), "the API status stays visible to callers")
	})

	t.Run("image never pulls", func(t *testing.T) {
		e := newFake(t)
		e.podStatus = corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName, Image: "nope:1",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}}
		_, err := e.p.Start(ctx, e.spec("ws1", 1, `{"image":"nope:1"}`))
		require.ErrorContains(t, err, "image nope:1 cannot be pulled: ImagePullBackOff")
		pods, _ := e.c.CoreV1().Pods("boxes").List(ctx, metav1.ListOptions{})
		require.Empty(t, pods.Items)
		secrets, _ := e.c.CoreV1().Secrets("boxes").List(ctx, metav1.ListOptions{})
		require.Empty(t, secrets.Items)
	})

	t.Run("unschedulable", func(t *testing.T) {
		e := newFake(t)
		e.podStatus = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
			Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes match pod's node affinity"}}}
		_, err := e.p.Start(ctx, e.spec("ws1", 1, `{"image":"box:1"}`))
		require.ErrorContains(t, err, "unschedulable: 0/3 nodes")
	})

	t.Run("deadline", func(t *testing.T) {
		e := newFake(t)
		e.podStatus = corev1.PodStatus{Phase: corev1.PodPending}
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := e.p.Start(ctx, e.spec("ws1", 1, `{"image":"box:1"}`))
		require.ErrorContains(t, err, "not running before the deadline (pending on node node-1)")
	})
}

func TestWaitReportsTheEndOfThePod(t *testing.T) {
	t.Parallel()
	e := newFake(t)
	ctx := context.Background()
	h, err := e.p.Start(ctx, e.spec("ws1", 1, `{"image":"box:1"}`))
	require.NoError(t, err)
	ch := e.p.Wait(ctx, h)

	pod, err := e.c.CoreV1().Pods("boxes").Get(ctx, h.ID, metav1.GetOptions{})
	require.NoError(t, err)
	pod.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."}
	_, err = e.c.CoreV1().Pods("boxes").UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	require.NoError(t, err)
	select {
	case st := <-ch:
		require.False(t, st.Running)
		require.Equal(t, "pod evicted: The node was low on resource: memory.", st.Reason)
	case <-time.After(10 * time.Second):
		t.Fatal("no state from Wait")
	}
	_, ok := <-ch
	require.False(t, ok, "closed after its one state")

	cctx, cancel := context.WithCancel(ctx)
	h2, err := e.p.Start(ctx, e.spec("ws2", 1, `{"image":"box:1"}`))
	require.NoError(t, err)
	ch2 := e.p.Wait(cctx, h2)
	cancel()
	_, ok = <-ch2
	require.False(t, ok, "closed without a state when its context ends")
}

func TestStateOf(t *testing.T) {
	t.Parallel()
	term := func(code int32, reason string) []corev1.ContainerStatus {
		return []corev1.ContainerStatus{{Name: ContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}}}}
	}
	for name, tc := range map[string]struct {
		status corev1.PodStatus
		want   provision.State
	}{
		"running":   {corev1.PodStatus{Phase: corev1.PodRunning}, provision.State{Running: true, Reason: "running"}},
		"succeeded": {corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: term(0, "Completed")}, provision.State{Exited: true, Reason: "exited with code 0"}},
		"crashed":   {corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: term(3, "Error")}, provision.State{Exited: true, ExitCode: 3, Reason: "exited with code 3"}},
		"oom":       {corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: term(137, "OOMKilled")}, provision.State{Exited: true, ExitCode: 137, Reason: "exited with code 137 (OOMKilled)"}},
		"evicted":   {corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "low on disk"}, provision.State{Reason: "pod evicted: low on disk"}},
		"image": {corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName, Image: "x",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "InvalidImageName", Message: "bad"}}}}}, provision.State{Reason: "image x cannot be pulled: InvalidImageName: bad"}},
		"pulling": {corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}}, provision.State{Running: true, Reason: "pending: ErrImagePull"}},
	} {
		pod := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n"}, Status: tc.status}
		require.Equal(t, tc.want, stateOf(pod), name)
	}
}

func TestListAndOwnership(t *testing.T) {
	t.Parallel()
	e := newFake(t)
	ctx := context.Background()
	h1, err := e.p.Start(ctx, e.spec("ws1", 2, `{"image":"box:1"}`))
	require.NoError(t, err)
	_, err = e.p.Start(ctx, e.spec("ws0", 1, `{"image":"box:1"}`))
	require.NoError(t, err)
	// Another install's pod in the same namespace is not ours.
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orgplane-ws9-g1", Namespace: "boxes",
		Labels: map[string]string{LabelManagedBy: ManagedBy, LabelInstance: "other", LabelWorkspace: "ws9", LabelGeneration: "1"}}}
	_, err = e.c.CoreV1().Pods("boxes").Create(ctx, other, metav1.CreateOptions{})
	require.NoError(t, err)

	hs, err := e.p.List(ctx)
	require.NoError(t, err)
	require.Len(t, hs, 2)
	require.Equal(t, "ws0", hs[0].WorkspaceID)
	require.Equal(t, h1.ID, hs[1].ID)

	_, err = e.p.Inspect(ctx, provision.Handle{WorkspaceID: "ws9", Generation: 1, ID: "orgplane-ws9-g1"})
	require.ErrorIs(t, err, provision.ErrNotFound, "another install's pod")
	_, err = e.p.Inspect(ctx, provision.Handle{WorkspaceID: "ws1", Generation: 1, ID: h1.ID})
	require.ErrorIs(t, err, provision.ErrNotFound, "a handle whose generation the pod does not carry")
	require.NoError(t, e.p.Stop(ctx, provision.Handle{WorkspaceID: "ws9", Generation: 1, ID: "orgplane-ws9-g1"}))
	_, err = e.c.CoreV1().Pods("boxes").Get(ctx, "orgplane-ws9-g1", metav1.GetOptions{})
	require.NoError(t, err, "Stop never touches a pod that is not its box")
}

func TestNewChecksItsConfig(t *testing.T) {
	t.Parallel()
	c := fake.NewClientset()
	for _, cfg := range []Config{{Namespace: "n", Instance: "i"}, {Client: c, Instance: "i"}, {Client: c, Namespace: "n"}, {Client: c, Namespace: "n", Instance: "no spaces"}} {
		_, err := New(cfg)
		require.Error(t, err)
	}
}
