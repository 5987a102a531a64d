package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
)

// KubeletConfig configures a test kubelet.
type KubeletConfig struct {
	// Node is the name of the node it registers. Default "kubetest-node".
	Node string
	// NodeLabels are the node's labels (for node selectors).
	NodeLabels map[string]string
	// Namespace limits it to the pods of one namespace ("": all).
	Namespace string
	// Images maps an image name to a local static binary: the image's one
	// program. A pod's command[0] names that program inside the image, so
	// the kubelet runs the binary in its place; with no command it runs the
	// binary with the pod's args. An image not in Images never pulls: its
	// pods wait in ImagePullBackOff.
	Images map[string]string
}

// Kubelet stands in for a node's kubelet: it schedules pods of its
// namespace to its node (honouring node selectors; a pod that does not fit
// is marked Unschedulable), runs each pod's container as a local process
// with the env resolved from the pod's Secrets, reports phases through the
// status subresource, serves pods/log to the API server, and carries out
// graceful deletion (SIGTERM, SIGKILL after the grace period, then the
// final delete). It runs pods' processes as the test's own user.
type Kubelet struct {
	cfg    KubeletConfig
	c      kubernetes.Interface
	dir    string
	queue  workqueue.TypedRateLimitingInterface[string]
	lister func(ns, name string) (*corev1.Pod, error)
	stop   chan struct{}
	wg     sync.WaitGroup
	srv    *http.Server

	mu    sync.Mutex
	procs map[types.UID]*podProc
}

// podProc is the local process of one pod.
type podProc struct {
	cmd      *exec.Cmd
	log      string
	exited   chan struct{}
	killing  bool
	ns, name string
}

// StartKubelet registers a node and runs its pods until the test ends.
func (c *Cluster) StartKubelet(t testing.TB, cfg KubeletConfig) *Kubelet {
	t.Helper()
	k, err := c.startKubelet(t.TempDir(), cfg)
	if err != nil {
		t.Fatalf("start test kubelet: %v", err)
	}
	t.Cleanup(k.Stop)
	return k
}

func (c *Cluster) startKubelet(dir string, cfg KubeletConfig) (*Kubelet, error) {
	if cfg.Node == "" {
		cfg.Node = "kubetest-node"
	}
	k := &Kubelet{cfg: cfg, c: c.Client, dir: dir, stop: make(chan struct{}), procs: map[types.UID]*podProc{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, time.Second))}

	// pods/log reaches the kubelet over https at the node's InternalIP and
	// kubelet port; the API server does not verify the kubelet's
	// certificate unless told to.
	certPEM, keyPEM, err := c.ca.issue(cfg.Node, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", k.serveLogs)
	k.srv = &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = k.srv.ServeTLS(ln, "", "") }()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.registerNode(ctx, ln.Addr().(*net.TCPAddr).Port); err != nil {
		k.srv.Close()
		return nil, err
	}

	opts := []informers.SharedInformerOption{}
	if cfg.Namespace != "" {
		opts = append(opts, informers.WithNamespace(cfg.Namespace))
	}
	factory := informers.NewSharedInformerFactoryWithOptions(c.Client, 0, opts...)
	pods := factory.Core().V1().Pods()
	inf := pods.Informer()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			k.queue.Add(key)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue}); err != nil {
		k.srv.Close()
		return nil, err
	}
	lister := pods.Lister()
	k.lister = func(ns, name string) (*corev1.Pod, error) { return lister.Pods(ns).Get(name) }
	k.wg.Add(2)
	go func() { defer k.wg.Done(); inf.Run(k.stop) }()
	go func() { defer k.wg.Done(); k.work() }()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		k.Stop()
		return nil, errors.New("test kubelet: pod informer did not sync")
	}
	return k, nil
}

func (k *Kubelet) registerNode(ctx context.Context, port int) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.cfg.Node, Labels: maps.Clone(k.cfg.NodeLabels)}}
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	node.Labels["kubernetes.io/hostname"] = k.cfg.Node
	created, err := k.c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = k.c.CoreV1().Nodes().Get(ctx, k.cfg.Node, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", k.cfg.Node, err)
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: k.cfg.Node}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}},
	}
	if _, err := k.c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set status of node %s: %w", k.cfg.Node, err)
	}
	return nil
}

// Stop kills every pod process (SIGKILL), stops watching and serving.
func (k *Kubelet) Stop() {
	select {
	case <-k.stop:
		return
	default:
	}
	close(k.stop)
	k.queue.ShutDown()
	k.mu.Lock()
	procs := make([]*podProc, 0, len(k.procs))
	for _, p := range k.procs {
		procs = append(procs, p)
	}
	k.mu.Unlock()
	for _, p := range procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	k.wg.Wait()
	k.srv.Close()
}

func (k *Kubelet) work() {
	for {
		key, quit := k.queue.Get()
		if quit {
			return
		}
		err := k.sync(key)
		k.queue.Done(key)
		if errors.Is(err, errRetry) {
			k.queue.AddRateLimited(key)
		} else {
			k.queue.Forget(key)
		}
	}
}

var errRetry = errors.New("retry")

func (k *Kubelet) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func (k *Kubelet) sync(key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := k.lister(ns, name)
	if apierrors.IsNotFound(err) {
		k.forget(ns, name)
		return nil
	}
	if err != nil {
		return errRetry
	}
	switch {
	case pod.Spec.NodeName == "":
		return k.schedule(pod)
	case pod.Spec.NodeName != k.cfg.Node:
		return nil
	case pod.DeletionTimestamp != nil:
		return k.terminate(pod)
	case pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "":
		return k.run(pod)
	}
	return nil
}

// forget kills the process of a pod that was deleted at once (grace 0).
func (k *Kubelet) forget(ns, name string) {
	k.mu.Lock()
	var gone []*podProc
	for uid, p := range k.procs {
		if p.ns == ns && p.name == name {
			gone = append(gone, p)
			delete(k.procs, uid)
		}
	}
	k.mu.Unlock()
	for _, p := range gone {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// schedule binds a pod to this node, or marks it Unschedulable when its
// node selector does not match the node's labels.
func (k *Kubelet) schedule(pod *corev1.Pod) error {
	ctx, cancel := k.ctx()
	defer cancel()
	nodeLabels := labels.Set(maps.Clone(k.cfg.NodeLabels))
	if nodeLabels == nil {
		nodeLabels = labels.Set{}
	}
	nodeLabels["kubernetes.io/hostname"] = k.cfg.Node
	if !labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(nodeLabels) {
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonUnschedulable {
				return nil
			}
		}
		return k.setStatus(ctx, pod, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.Conditions = append(s.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
				LastTransitionTime: metav1.Now()})
		})
	}
	err := k.c.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: k.cfg.Node},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return errRetry
	}
	return nil
}

// setStatus changes a pod's status through the status subresource, on the
// current object (retried on conflict); a pod that is gone or replaced is
// left alone.
func (k *Kubelet) setStatus(ctx context.Context, pod *corev1.Pod, change func(*corev1.PodStatus)) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := k.c.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != pod.UID {
			return nil
		}
		change(&cur.Status)
		_, err = k.c.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return errRetry
	}
	return nil
}

func waiting(c corev1.Container, reason, msg string) []corev1.ContainerStatus {
	return []corev1.ContainerStatus{{Name: c.Name, Image: c.Image, State: corev1.ContainerState{
		Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}}
}

// run starts the process of a bound, pending pod once.
func (k *Kubelet) run(pod *corev1.Pod) error {
	k.mu.Lock()
	_, running := k.procs[pod.UID]
	k.mu.Unlock()
	if running || len(pod.Spec.Containers) == 0 {
		return nil
	}
	ctx, cancel := k.ctx()
	defer cancel()
	c := pod.Spec.Containers[0]
	bin, ok := k.cfg.Images[c.Image]
	if !ok {
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.State.Waiting != nil && cs.State.Waiting.Reason == "ImagePullBackOff" {
				return nil
			}
		}
		return k.setStatus(ctx, pod, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.ContainerStatuses = waiting(c, "ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q: not found", c.Image))
		})
	}
	env, err := k.env(ctx, pod.Namespace, c)
	if err != nil {
		// As a kubelet: the Secret may not be there yet; try again.
		_ = k.setStatus(ctx, pod, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.ContainerStatuses = waiting(c, "CreateContainerConfigError", err.Error())
		})
		return errRetry
	}
	argv := append([]string{bin}, c.Args...)
	if len(c.Command) > 0 {
		argv = append(append([]string{bin}, c.Command[1:]...), c.Args...)
	}
	logPath := filepath.Join(k.dir, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return errRetry
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr, cmd.Dir = env, f, f, k.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return k.setStatus(ctx, pod, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodFailed
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: c.Name, Image: c.Image, State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error()}}}}
		})
	}
	p := &podProc{cmd: cmd, log: logPath, exited: make(chan struct{}), ns: pod.Namespace, name: pod.Name}
	k.mu.Lock()
	k.procs[pod.UID] = p
	k.mu.Unlock()
	started, yes := metav1.Now(), true
	_ = k.setStatus(ctx, pod, func(s *corev1.PodStatus) {
		s.Phase, s.StartTime, s.HostIP, s.PodIP = corev1.PodRunning, &started, "127.0.0.1", "127.0.0.1"
		s.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: started},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: started},
		}
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: c.Name, Image: c.Image, Ready: true, Started: &yes,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}
	})
	k.wg.Add(1)
	go k.reap(pod, c, p, f)
	return nil
}

// reap waits for a pod's process and reports how it ended.
func (k *Kubelet) reap(pod *corev1.Pod, c corev1.Container, p *podProc, f *os.File) {
	defer k.wg.Done()
	err := p.cmd.Wait()
	f.Close()
	close(p.exited)
	code, reason := 0, "Completed"
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code, reason = ee.ExitCode(), "Error"
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	phase := corev1.PodSucceeded
	if code != 0 {
		phase = corev1.PodFailed
	}
	ctx, cancel := k.ctx()
	defer cancel()
	_ = k.setStatus(ctx, pod, func(s *corev1.PodStatus) {
		s.Phase = phase
		for i := range s.Conditions {
			if s.Conditions[i].Type == corev1.PodReady {
				s.Conditions[i].Status = corev1.ConditionFalse
			}
		}
		var startedAt metav1.Time
		if s.StartTime != nil {
			startedAt = *s.StartTime
		}
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: c.Name, Image: c.Image, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: int32(code), Reason: reason, StartedAt: startedAt, FinishedAt: metav1.Now()}}}}
	})
	k.queue.Add(pod.Namespace + "/" + pod.Name) // a deletion may be waiting for this
}

// terminate carries out a graceful deletion: SIGTERM to the process group,
// SIGKILL after the grace period, then the final delete.
func (k *Kubelet) terminate(pod *corev1.Pod) error {
	k.mu.Lock()
	p := k.procs[pod.UID]
	start := p != nil && !p.killing
	if start {
		p.killing = true
	}
	k.mu.Unlock()
	if p != nil {
		if start {
			grace := time.Duration(0)
			if pod.DeletionGracePeriodSeconds != nil {
				grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
			}
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
			k.wg.Add(1)
			go func() {
				defer k.wg.Done()
				select {
				case <-p.exited:
				case <-time.After(grace):
					_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
				case <-k.stop:
				}
			}()
		}
		select {
		case <-p.exited:
		default:
			return nil // reap enqueues the pod again when it has exited
		}
		k.mu.Lock()
		delete(k.procs, pod.UID)
		k.mu.Unlock()
	}
	ctx, cancel := k.ctx()
	defer cancel()
	zero := int64(0)
	uid := pod.UID
	err := k.c.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return errRetry
	}
	return nil
}

// env resolves a container's environment as a kubelet does: envFrom
// Secrets and ConfigMaps, then env (values and secretKeyRefs).
func (k *Kubelet) env(ctx context.Context, ns string, c corev1.Container) ([]string, error) {
	m := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.SecretRef != nil:
			s, err := k.c.CoreV1().Secrets(ns).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if from.SecretRef.Optional != nil && *from.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("secret %q not found", from.SecretRef.Name)
			}
			for key, v := range s.Data {
				m[from.Prefix+key] = string(v)
			}
		case from.ConfigMapRef != nil:
			cm, err := k.c.CoreV1().ConfigMaps(ns).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("configmap %q not found", from.ConfigMapRef.Name)
			}
			for key, v := range cm.Data {
				m[from.Prefix+key] = v
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			m[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, err := k.c.CoreV1().Secrets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("secret %q not found", ref.Name)
			}
			m[e.Name] = string(s.Data[ref.Key])
		}
	}
	env := make([]string, 0, len(m))
	for key, v := range m {
		env = append(env, key+"="+v)
	}
	return env, nil
}

// serveLogs answers the API server's pods/log: the output of the pod's
// newest process, its last tailLines lines, at most limitBytes.
func (k *Kubelet) serveLogs(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("pod")
	k.mu.Lock()
	var path string
	for _, p := range k.procs {
		if p.ns == ns && p.name == name {
			path = p.log
		}
	}
	k.mu.Unlock()
	if path == "" {
		// The process may have ended and been reaped: find its file.
		matches, _ := filepath.Glob(filepath.Join(k.dir, ns+"_"+name+"_*.log"))
		if len(matches) == 0 {
			http.Error(w, "no such container", http.StatusNotFound)
			return
		}
		path = matches[len(matches)-1]
	}
	b, err := os.ReadFile(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("tailLines")); err == nil && n >= 0 {
		lines := bytes.SplitAfter(b, []byte("\n"))
		if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1]
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		b = bytes.Join(lines, nil)
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("limitBytes")); err == nil && n >= 0 && len(b) > n {
		b = b[:n]
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(b)
}

// Running reports the pods (namespace/name) whose process runs now.
func (k *Kubelet) Running() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, p := range k.procs {
		select {
		case <-p.exited:
		default:
			out = append(out, p.ns+"/"+p.name)
		}
	}
	return out
}

// String names the kubelet's node.
func (k *Kubelet) String() string { return "test kubelet " + strings.TrimSpace(k.cfg.Node) }
