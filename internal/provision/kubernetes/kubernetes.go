// Package kubernetes runs boxes as Kubernetes pods through the API server.
//
// One pod per provision (restartPolicy Never: orgplane owns restarts, so a
// crash reaches orgplane's rules instead of being hidden by the kubelet),
// named orgplane-<workspace>-g<generation>. Its environment lives in a
// Secret of its own, never in the pod spec: the pod takes it with envFrom,
// and the Secret is owned by the pod (the garbage collector removes it with
// the pod; Stop removes both anyway). Both carry the same labels: managed
// by orgplane, the install's instance, the org, the workspace and the
// generation.
//
// Status comes from one shared informer over this install's pods (a label
// selector), not from polling per box. Every API call runs under a
// deadline. The provisioner touches only objects that carry its labels.
package kubernetes

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/kubernetes/kubespec"
	"github.com/orgplane/orgplane/internal/redact"
)

// Labels on every pod and Secret this package creates.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by" // ManagedBy
	LabelInstance   = "orgplane.io/instance"
	LabelOrg        = "orgplane.io/org"
	LabelWorkspace  = "orgplane.io/workspace"
	LabelGeneration = "orgplane.io/generation"
	// AnnotationPublicEnv names the env variables that are not secret
	// (comma separated): their values are not masked in the box's output.
	AnnotationPublicEnv = "orgplane.io/public-env"
	ManagedBy           = "orgplane"
	// ContainerName is the box's one container.
	ContainerName = "box"
)

// Defaults of Config.
const (
	DefaultStopGrace   = 5 * time.Second
	DefaultCallTimeout = 30 * time.Second
	// DefaultUID runs a box as nobody whatever its image says.
	DefaultUID = 65534
)

// Config configures a Provisioner.
type Config struct {
	// Client talks to the API server (required).
	Client kubernetes.Interface
	// Namespace holds the boxes' pods and Secrets (required).
	Namespace string
	// Instance names this install (a label value, required): several
	// installs can share a namespace without touching each other's pods.
	// Every replica of one install must use the same instance.
	Instance string
	// StopGrace is the pods' termination grace period. Default 5s.
	StopGrace time.Duration
	// CallTimeout bounds each API call. Default 30s.
	CallTimeout time.Duration
	// RunAsUser is the uid (and gid) of the box's process. Default 65534.
	RunAsUser int64
	// NamePrefix starts every pod name. Default "orgplane".
	NamePrefix string
	// Logger receives the provisioner's own events. Default slog.Default().
	Logger *slog.Logger
}

// Provisioner runs boxes as pods. It implements provision.Provisioner,
// provision.Waiter, provision.Logger and provision.Lister. Every replica of
// the control plane sees every pod, so it is not a provision.Noder.
type Provisioner struct {
	cfg  Config
	c    kubernetes.Interface
	log  *slog.Logger
	sel  labels.Selector
	inf  cache.SharedIndexInformer
	pods listerscorev1.PodLister
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{} // pod name -> nudged on each change
}

var (
	_ provision.Provisioner = (*Provisioner)(nil)
	_ provision.Waiter      = (*Provisioner)(nil)
	_ provision.Logger      = (*Provisioner)(nil)
	_ provision.Lister      = (*Provisioner)(nil)
)

var labelValueRE = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$`)

// New returns a Provisioner and starts its informer, which lists and
// watches this install's pods in the background until Close. New itself
// does not wait for the API server.
func New(cfg Config) (*Provisioner, error) {
	if cfg.Client == nil {
		return nil, errors.New("new kubernetes provisioner: no client")
	}
	if cfg.Namespace == "" {
		return nil, errors.New("new kubernetes provisioner: no namespace")
	}
	if !labelValueRE.MatchString(cfg.Instance) {
		return nil, fmt.Errorf("new kubernetes provisioner: instance %q must be a label value (1-63 letters, digits, '-', '_', '.')", cfg.Instance)
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.RunAsUser <= 0 {
		cfg.RunAsUser = DefaultUID
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "orgplane"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Provisioner{
		cfg: cfg, c: cfg.Client,
		log:     cfg.Logger.With("runtime", provision.RuntimeKube, "namespace", cfg.Namespace),
		sel:     labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelInstance: cfg.Instance}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		waiters: map[string]map[chan struct{}]struct{}{},
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = p.sel.String() }),
		informers.WithTransform(func(obj any) (any, error) {
			if pod, ok := obj.(*corev1.Pod); ok {
				pod.ManagedFields = nil // not needed, and the bulk of a pod
			}
			return obj, nil
		}),
	)
	podInf := factory.Core().V1().Pods()
	p.inf, p.pods = podInf.Informer(), podInf.Lister()
	nudge := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			p.nudge(pod.Name)
		}
	}
	if _, err := p.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    nudge,
		UpdateFunc: func(_, obj any) { nudge(obj) },
		DeleteFunc: nudge,
	}); err != nil {
		return nil, fmt.Errorf("new kubernetes provisioner: %w", err)
	}
	if err := p.inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		p.log.Warn("pod watch", "err", err)
	}); err != nil {
		return nil, fmt.Errorf("new kubernetes provisioner: %w", err)
	}
	go func() {
		defer close(p.done)
		p.inf.Run(p.stop)
	}()
	return p, nil
}

// Close stops the informer. Pods keep running.
func (p *Provisioner) Close() error {
	p.once.Do(func() { close(p.stop) })
	<-p.done
	return nil
}

// call bounds one API call.
func (p *Provisioner) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.cfg.CallTimeout)
}

// synced waits for the informer's first list.
func (p *Provisioner) synced(ctx context.Context) error {
	if p.inf.HasSynced() {
		return nil
	}
	if !cache.WaitForCacheSync(ctx.Done(), p.inf.HasSynced) {
		return fmt.Errorf("pods of namespace %s not listed yet: %w", p.cfg.Namespace, cmp.Or(ctx.Err(), context.Canceled))
	}
	return nil
}

func (p *Provisioner) nudge(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ch := range p.waiters[name] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// watch registers for changes of the named pod; call the returned func to
// stop.
func (p *Provisioner) watch(name string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	p.mu.Lock()
	if p.waiters[name] == nil {
		p.waiters[name] = map[chan struct{}]struct{}{}
	}
	p.waiters[name][ch] = struct{}{}
	p.mu.Unlock()
	return ch, func() {
		p.mu.Lock()
		delete(p.waiters[name], ch)
		if len(p.waiters[name]) == 0 {
			delete(p.waiters, name)
		}
		p.mu.Unlock()
	}
}

var nameUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// PodName is the name of the pod (and Secret) of one provision. A
// workspace id that is not already a DNS label is folded to one, and a
// hash of the original keeps folded ids apart.
func (p *Provisioner) PodName(workspaceID string, generation int64) string {
	ws := strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(workspaceID), "-"), "-")
	if ws != workspaceID || len(ws) > 40 {
		sum := sha256.Sum256([]byte(workspaceID))
		ws = strings.Trim(ws[:min(len(ws), 30)], "-") + "-" + hex.EncodeToString(sum[:4])
	}
	return fmt.Sprintf("%s-%s-g%d", p.cfg.NamePrefix, strings.TrimPrefix(ws, "-"), generation)
}

func (p *Provisioner) labels(spec provision.Spec) map[string]string {
	return map[string]string{
		LabelManagedBy:  ManagedBy,
		LabelInstance:   p.cfg.Instance,
		LabelOrg:        spec.OrgID,
		LabelWorkspace:  spec.WorkspaceID,
		LabelGeneration: strconv.FormatInt(spec.Generation, 10),
	}
}

// boxSpec is the kubernetes spec of a box: the workspace's whole spec when
// the service passed it, else what the shared fields say.
func boxSpec(spec provision.Spec) (kubespec.Spec, error) {
	ks := kubespec.Spec{Image: spec.Image, Command: spec.Command}
	if len(spec.RuntimeSpec) > 0 {
		var err error
		if ks, err = kubespec.Parse(spec.RuntimeSpec); err != nil {
			return ks, err
		}
		ks.Image = cmp.Or(spec.Image, ks.Image)
		if len(spec.Command) > 0 {
			ks.Command = spec.Command
		}
	}
	if ks.Image == "" {
		return ks, errors.New("empty image")
	}
	return ks, nil
}

// Start creates the box's pod and its env Secret, then waits until the pod
// has left Pending (it runs, or already ran), or has failed to get there:
// unschedulable, or its image cannot be pulled. On failure both objects are
// removed and the error says why (a box that never ran is not kept).
func (p *Provisioner) Start(ctx context.Context, spec provision.Spec) (provision.Handle, error) {
	if spec.WorkspaceID == "" {
		return provision.Handle{}, errors.New("start box: empty workspace id")
	}
	h, err := p.start(ctx, spec)
	if err != nil {
		// API server messages are not ours; make sure none echoes a value.
		return provision.Handle{}, redact.Error(fmt.Errorf("start box %s: %w", spec.WorkspaceID, err), provision.MaskedEnv(spec.Env, spec.PublicKeys))
	}
	p.log.Info("box started", "workspace", h.WorkspaceID, "generation", h.Generation, "pod", h.ID)
	return h, nil
}

func (p *Provisioner) start(ctx context.Context, spec provision.Spec) (provision.Handle, error) {
	ks, err := boxSpec(spec)
	if err != nil {
		return provision.Handle{}, err
	}
	for _, v := range []string{spec.OrgID, spec.WorkspaceID} {
		if !labelValueRE.MatchString(v) {
			return provision.Handle{}, fmt.Errorf("id %q cannot be a label value", v)
		}
	}
	name := p.PodName(spec.WorkspaceID, spec.Generation)
	pod := p.podObject(name, spec, ks)
	created, err := p.createPod(ctx, pod)
	if err != nil {
		return provision.Handle{}, err
	}
	h := provision.Handle{
		Runtime:     provision.RuntimeKube,
		WorkspaceID: spec.WorkspaceID,
		Generation:  spec.Generation,
		ID:          name,
		StartedAt:   created.CreationTimestamp.UTC(),
	}
	secret := p.secretObject(created, spec)
	cctx, cancel := p.call(ctx)
	_, err = p.c.CoreV1().Secrets(p.cfg.Namespace).Create(cctx, secret, metav1.CreateOptions{})
	cancel()
	if err != nil {
		p.discard(ctx, name, created.UID)
		return provision.Handle{}, fmt.Errorf("create secret %s: %w", name, err)
	}
	if err := p.waitStarted(ctx, h, created.UID); err != nil {
		p.discard(ctx, name, created.UID)
		return provision.Handle{}, err
	}
	if pod, err := p.pods.Pods(p.cfg.Namespace).Get(name); err == nil && pod.Status.StartTime != nil {
		h.StartedAt = pod.Status.StartTime.UTC()
	}
	return h, nil
}

// createPod creates the pod. A pod of the same generation that is already
// there was started by a run that crashed before recording it (its token
// has been revoked since): it is replaced.
func (p *Provisioner) createPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	for attempt := 0; ; attempt++ {
		cctx, cancel := p.call(ctx)
		created, err := p.c.CoreV1().Pods(p.cfg.Namespace).Create(cctx, pod, metav1.CreateOptions{})
		cancel()
		if err == nil {
			return created, nil
		}
		if !apierrors.IsAlreadyExists(err) || attempt > 0 {
			return nil, fmt.Errorf("create pod %s: %w", pod.Name, err)
		}
		old, gerr := p.getPod(ctx, pod.Name)
		if gerr != nil || !p.ownedLabels(old.Labels, pod.Labels[LabelWorkspace], pod.Labels[LabelGeneration]) {
			return nil, fmt.Errorf("create pod %s: %w", pod.Name, err)
		}
		p.log.Warn("replacing a pod of the same generation left by an earlier start", "pod", pod.Name)
		if err := p.forceDelete(ctx, pod.Name, old.UID); err != nil {
			return nil, err
		}
	}
}

// discard removes a pod that failed to start, and its Secret, with a fresh
// context: ctx may be what just failed.
func (p *Provisioner) discard(ctx context.Context, name string, uid types.UID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.CallTimeout)
	defer cancel()
	if err := p.forceDelete(ctx, name, uid); err != nil {
		p.log.Warn("remove pod that failed to start", "pod", name, "err", err)
	}
}

// forceDelete deletes the pod at once (grace 0: a pod bound to a node
// otherwise waits for its kubelet) and its Secret.
func (p *Provisioner) forceDelete(ctx context.Context, name string, uid types.UID) error {
	zero := int64(0)
	cctx, cancel := p.call(ctx)
	defer cancel()
	err := p.c.CoreV1().Pods(p.cfg.Namespace).Delete(cctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s: %w", name, err)
	}
	return p.deleteSecret(ctx, name)
}

func (p *Provisioner) deleteSecret(ctx context.Context, name string) error {
	cctx, cancel := p.call(ctx)
	defer cancel()
	err := p.c.CoreV1().Secrets(p.cfg.Namespace).Delete(cctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete secret %s: %w", name, err)
	}
	return nil
}

// waitStarted waits, on the informer, until the pod has left Pending or
// has failed to. The pod's uid guards against a namesake.
func (p *Provisioner) waitStarted(ctx context.Context, h provision.Handle, uid types.UID) error {
	changed, unwatch := p.watch(h.ID)
	defer unwatch()
	if err := p.synced(ctx); err != nil {
		return err
	}
	last := "not seen yet"
	for {
		pod, err := p.pods.Pods(p.cfg.Namespace).Get(h.ID)
		switch {
		case apierrors.IsNotFound(err):
			// The watch may not have delivered it yet.
		case err != nil:
			return err
		case pod.UID != uid:
			return fmt.Errorf("pod %s was replaced while starting", h.ID)
		default:
			if pod.DeletionTimestamp != nil {
				return fmt.Errorf("pod %s was deleted while starting", h.ID)
			}
			if reason, failed := pendingFailure(pod); failed {
				return fmt.Errorf("pod %s: %s", h.ID, reason)
			}
			if pod.Status.Phase != corev1.PodPending && pod.Status.Phase != "" {
				return nil
			}
			last = pendingReason(pod)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("pod %s not running before the deadline (%s): %w", h.ID, last, ctx.Err())
		}
	}
}

// podObject is the box's pod: secure defaults, the env from its Secret.
func (p *Provisioner) podObject(name string, spec provision.Spec, ks kubespec.Spec) *corev1.Pod {
	yes, no := true, false
	uid := p.cfg.RunAsUser
	grace := int64(math.Ceil(p.cfg.StopGrace.Seconds()))
	seccomp := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	annotations := map[string]string{}
	if len(spec.PublicKeys) > 0 {
		annotations[AnnotationPublicEnv] = strings.Join(slices.Sorted(slices.Values(spec.PublicKeys)), ",")
	}
	c := corev1.Container{
		Name:    ContainerName,
		Image:   ks.Image,
		Command: slices.Clone(ks.Command),
		Args:    slices.Clone(ks.Args),
		EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
		SecurityContext: &corev1.SecurityContext{
			Privileged:               &no,
			AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem:   &yes,
			RunAsNonRoot:             &yes,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           seccomp,
		},
		// A read-only root needs somewhere to write scratch files.
		VolumeMounts:             []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		ImagePullPolicy:          corev1.PullIfNotPresent,
	}
	if ks.Resources != nil {
		c.Resources = resources(ks.Resources)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.cfg.Namespace, Labels: p.labels(spec), Annotations: annotations},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			Containers:                    []corev1.Container{c},
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &no,
			// Service links would add env variables orgplane did not choose.
			EnableServiceLinks: &no,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   &yes,
				RunAsUser:      &uid,
				RunAsGroup:     &uid,
				FSGroup:        &uid,
				SeccompProfile: seccomp,
			},
			Volumes:      []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			NodeSelector: maps.Clone(ks.NodeSelector),
		},
	}
	if ks.ServiceAccount != "" {
		pod.Spec.ServiceAccountName = ks.ServiceAccount
		pod.Spec.AutomountServiceAccountToken = &yes
	}
	for _, t := range ks.Tolerations {
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(cmp.Or(t.Operator, "Equal")), Value: t.Value,
			Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.TolerationSeconds,
		})
	}
	for _, s := range ks.ImagePullSecrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	return pod
}

// secretObject holds the box's whole env; the pod owns it.
func (p *Provisioner) secretObject(pod *corev1.Pod, spec provision.Spec) *corev1.Secret {
	yes := true
	data := make(map[string][]byte, len(spec.Env))
	for k, v := range spec.Env {
		data[k] = []byte(v)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: p.cfg.Namespace, Labels: maps.Clone(pod.Labels), Annotations: maps.Clone(pod.Annotations),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}},
		},
		Type:      corev1.SecretTypeOpaque,
		Immutable: &yes,
		Data:      data,
	}
}

// ownedLabels reports whether an object's labels make it this install's
// box of workspace ws, generation gen.
func (p *Provisioner) ownedLabels(l map[string]string, ws, gen string) bool {
	return l[LabelManagedBy] == ManagedBy && l[LabelInstance] == p.cfg.Instance &&
		l[LabelWorkspace] == ws && l[LabelGeneration] == gen
}

func (p *Provisioner) owned(pod *corev1.Pod, h provision.Handle) bool {
	return p.ownedLabels(pod.Labels, h.WorkspaceID, strconv.FormatInt(h.Generation, 10))
}

func (p *Provisioner) getPod(ctx context.Context, name string) (*corev1.Pod, error) {
	cctx, cancel := p.call(ctx)
	defer cancel()
	return p.c.CoreV1().Pods(p.cfg.Namespace).Get(cctx, name, metav1.GetOptions{})
}

// pod returns the pod of h, from the informer's cache, or from the API
// server when the cache has not seen it (it may lag a fresh create);
// provision.ErrNotFound when it is gone or is not h's box.
func (p *Provisioner) pod(ctx context.Context, h provision.Handle) (*corev1.Pod, error) {
	if h.ID == "" {
		return nil, errors.New("empty pod name in handle")
	}
	if err := p.synced(ctx); err != nil {
		return nil, err
	}
	pod, err := p.pods.Pods(p.cfg.Namespace).Get(h.ID)
	if apierrors.IsNotFound(err) {
		pod, err = p.getPod(ctx, h.ID)
	}
	if apierrors.IsNotFound(err) {
		return nil, provision.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get pod %s: %w", h.ID, err)
	}
	if !p.owned(pod, h) {
		return nil, provision.ErrNotFound
	}
	return pod, nil
}

// Inspect reports the pod's state; provision.ErrNotFound when it is gone.
func (p *Provisioner) Inspect(ctx context.Context, h provision.Handle) (provision.State, error) {
	pod, err := p.pod(ctx, h)
	if err != nil {
		return provision.State{}, err
	}
	return stateOf(pod), nil
}

// Adopt takes over a pod started by a previous run of the control plane:
// the cluster owns pods, so Adopt checks that it is still there and still
// this box.
func (p *Provisioner) Adopt(ctx context.Context, h provision.Handle) (provision.State, error) {
	pod, err := p.pod(ctx, h)
	if err != nil {
		return provision.State{}, err
	}
	p.log.Info("box adopted", "workspace", h.WorkspaceID, "generation", h.Generation, "pod", h.ID)
	return stateOf(pod), nil
}

// Stop deletes the pod with its grace period (the kubelet sends SIGTERM,
// then SIGKILL), waits until it is gone, and deletes its Secret. A pod
// still there after the grace period and a margin is deleted at once. A
// pod that is gone, or not this box's, is not an error.
func (p *Provisioner) Stop(ctx context.Context, h provision.Handle) error {
	pod, err := p.pod(ctx, h)
	if errors.Is(err, provision.ErrNotFound) {
		// The pod may be gone with its Secret left (a crash in between).
		if err := p.deleteOwnedSecret(ctx, h); err != nil {
			return fmt.Errorf("stop box: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop box: %w", err)
	}
	gone, unwatch := p.watch(pod.Name)
	defer unwatch()
	grace := int64(math.Ceil(p.cfg.StopGrace.Seconds()))
	uid := pod.UID
	cctx, cancel := p.call(ctx)
	err = p.c.CoreV1().Pods(p.cfg.Namespace).Delete(cctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &grace, Preconditions: &metav1.Preconditions{UID: &uid}})
	cancel()
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("stop box: delete pod %s: %w", pod.Name, err)
	}
	// The kubelet takes the grace period at most, then removes the pod.
	removed := p.waitGone(ctx, pod.Name, uid, gone, p.cfg.StopGrace+10*time.Second)
	if !removed && ctx.Err() == nil {
		p.log.Warn("pod outlived its grace period; deleting it at once", "pod", pod.Name)
	}
	// A fresh context: a Stop whose deadline passed still removes the pod
	// at once rather than leave it half deleted.
	cleanup := context.WithoutCancel(ctx)
	if removed {
		err = p.deleteSecret(cleanup, pod.Name)
	} else {
		err = p.forceDelete(cleanup, pod.Name, uid)
		if err == nil {
			// Until the informer sees the deletion, Inspect would still
			// find the pod: a stopped box must not read as running.
			p.waitGone(cleanup, pod.Name, uid, gone, 10*time.Second)
		}
	}
	if err != nil {
		return fmt.Errorf("stop box: %w", err)
	}
	p.log.Info("box stopped", "workspace", h.WorkspaceID, "generation", h.Generation, "pod", pod.Name)
	return nil
}

// waitGone waits, at most limit, until the informer no longer holds the
// pod of that uid, and reports whether it went.
func (p *Provisioner) waitGone(ctx context.Context, name string, uid types.UID, gone <-chan struct{}, limit time.Duration) bool {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		cur, err := p.pods.Pods(p.cfg.Namespace).Get(name)
		if apierrors.IsNotFound(err) || (err == nil && cur.UID != uid) {
			return true
		}
		select {
		case <-gone:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// deleteOwnedSecret deletes h's Secret if it is there and this box's.
func (p *Provisioner) deleteOwnedSecret(ctx context.Context, h provision.Handle) error {
	cctx, cancel := p.call(ctx)
	s, err := p.c.CoreV1().Secrets(p.cfg.Namespace).Get(cctx, h.ID, metav1.GetOptions{})
	cancel()
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get secret %s: %w", h.ID, err)
	}
	if !p.ownedLabels(s.Labels, h.WorkspaceID, strconv.FormatInt(h.Generation, 10)) {
		return nil
	}
	return p.deleteSecret(ctx, h.ID)
}

// Wait implements provision.Waiter on the informer: no polling. The watch
// is registered before Wait returns, so a change that follows cannot slip
// past it. A pod that is gone (or not this box's) yields one State at once.
func (p *Provisioner) Wait(ctx context.Context, h provision.Handle) <-chan provision.State {
	ch := make(chan provision.State, 1)
	changed, unwatch := p.watch(h.ID)
	go func() {
		defer close(ch)
		defer unwatch()
		if err := p.synced(ctx); err != nil {
			return
		}
		for {
			pod, err := p.pods.Pods(p.cfg.Namespace).Get(h.ID)
			switch {
			case apierrors.IsNotFound(err) || (err == nil && !p.owned(pod, h)):
				ch <- provision.State{Reason: "pod removed"}
				return
			case err == nil:
				if st := stateOf(pod); !st.Running {
					ch <- st
					return
				}
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// imageFailures are container waiting reasons that end a box: its image
// will not come (ErrImagePull alone is retried by the kubelet, and becomes
// ImagePullBackOff when it keeps failing).
var imageFailures = []string{"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}

// pendingFailure reports why a Pending pod will not start on its own.
func pendingFailure(pod *corev1.Pod) (string, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return "unschedulable: " + c.Message, true
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && slices.Contains(imageFailures, w.Reason) {
			return fmt.Sprintf("image %s cannot be pulled: %s: %s", cs.Image, w.Reason, w.Message), true
		}
	}
	return "", false
}

// pendingReason says what a Pending pod waits for.
func pendingReason(pod *corev1.Pod) string {
	if pod.Spec.NodeName == "" {
		return "not scheduled"
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return w.Reason
		}
	}
	return "pending on node " + pod.Spec.NodeName
}

// stateOf describes a pod. A pod that cannot start (unschedulable, its
// image never pulls) is not running: the box has failed, with the reason.
func stateOf(pod *corev1.Pod) provision.State {
	box := func() *corev1.ContainerStatus {
		for i := range pod.Status.ContainerStatuses {
			if pod.Status.ContainerStatuses[i].Name == ContainerName {
				return &pod.Status.ContainerStatuses[i]
			}
		}
		return nil
	}()
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		st := provision.State{Exited: true, Reason: "pod " + strings.ToLower(string(pod.Status.Phase))}
		if box != nil && box.State.Terminated != nil {
			t := box.State.Terminated
			st.ExitCode = int(t.ExitCode)
			st.Reason = fmt.Sprintf("exited with code %d", t.ExitCode)
			if t.Reason != "" && t.Reason != "Completed" && t.Reason != "Error" {
				st.Reason += " (" + t.Reason + ")" // OOMKilled...
			}
		} else if pod.Status.Phase == corev1.PodFailed {
			st.Exited, st.ExitCode = false, 0 // it never ran, or its end is unknown
		}
		if pod.Status.Reason != "" { // Evicted, DeadlineExceeded...
			st.Reason = fmt.Sprintf("pod %s: %s", strings.ToLower(pod.Status.Reason), pod.Status.Message)
		}
		return st
	case corev1.PodRunning:
		if pod.DeletionTimestamp != nil {
			return provision.State{Running: true, Reason: "running, being deleted"}
		}
		return provision.State{Running: true, Reason: "running"}
	default: // Pending, Unknown
		if reason, failed := pendingFailure(pod); failed {
			return provision.State{Reason: reason}
		}
		if pod.DeletionTimestamp != nil && pod.Spec.NodeName == "" {
			return provision.State{Reason: "pod deleted before it ran"}
		}
		// Starting: not running yet, not failed either. Start returns only
		// once a pod has left Pending, so this is rare.
		return provision.State{Running: true, Reason: "pending: " + pendingReason(pod)}
	}
}

// List returns a Handle for every pod of this install, running or not, so
// that orphans left by a crash can be found and stopped.
func (p *Provisioner) List(ctx context.Context) ([]provision.Handle, error) {
	if err := p.synced(ctx); err != nil {
		return nil, err
	}
	pods, err := p.pods.Pods(p.cfg.Namespace).List(p.sel)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	hs := make([]provision.Handle, 0, len(pods))
	for _, pod := range pods {
		gen, err := strconv.ParseInt(pod.Labels[LabelGeneration], 10, 64)
		if err != nil {
			p.log.Warn("pod with bad generation label", "pod", pod.Name)
			continue
		}
		started := pod.CreationTimestamp.UTC()
		if pod.Status.StartTime != nil {
			started = pod.Status.StartTime.UTC()
		}
		hs = append(hs, provision.Handle{
			Runtime:     provision.RuntimeKube,
			WorkspaceID: pod.Labels[LabelWorkspace],
			Generation:  gen,
			ID:          pod.Name,
			StartedAt:   started,
		})
	}
	slices.SortFunc(hs, func(a, b provision.Handle) int {
		return cmp.Or(cmp.Compare(a.WorkspaceID, b.WorkspaceID), cmp.Compare(a.Generation, b.Generation))
	})
	return hs, nil
}

// maxLogBytes bounds what Logs reads from the API server.
const maxLogBytes = 4 << 20

// Logs returns the last tail lines (all when tail <= 0) of the output of
// the workspace's newest pod, with every secret value of its env masked.
// The cluster keeps output only while the pod exists: after Stop there is
// nothing (nil, nil).
func (p *Provisioner) Logs(ctx context.Context, workspaceID string, tail int) ([]byte, error) {
	if err := p.synced(ctx); err != nil {
		return nil, err
	}
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelInstance: p.cfg.Instance, LabelWorkspace: workspaceID})
	pods, err := p.pods.Pods(p.cfg.Namespace).List(sel)
	if err != nil {
		return nil, fmt.Errorf("list pods of %s: %w", workspaceID, err)
	}
	if len(pods) == 0 {
		return nil, nil
	}
	newest := slices.MaxFunc(pods, func(a, b *corev1.Pod) int {
		ga, _ := strconv.ParseInt(a.Labels[LabelGeneration], 10, 64)
		gb, _ := strconv.ParseInt(b.Labels[LabelGeneration], 10, 64)
		return cmp.Or(cmp.Compare(ga, gb), a.CreationTimestamp.Compare(b.CreationTimestamp.Time))
	})
	if newest.Spec.NodeName == "" {
		return nil, nil // never ran
	}
	opts := &corev1.PodLogOptions{Container: ContainerName}
	if tail > 0 {
		n := int64(tail)
		opts.TailLines = &n
	}
	limit := int64(maxLogBytes)
	opts.LimitBytes = &limit
	cctx, cancel := p.call(ctx)
	defer cancel()
	rc, err := p.c.CoreV1().Pods(p.cfg.Namespace).GetLogs(newest.Name, opts).Stream(cctx)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", workspaceID, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(rc, maxLogBytes)); err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", workspaceID, err)
	}
	vals, err := p.startedWith(ctx, newest)
	if err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", workspaceID, err)
	}
	return []byte(redact.Strings(buf.String(), vals)), nil
}

// startedWith returns the values to mask in a pod's output: every value of
// its Secret (its secrets, its token: the Secret keeps them, so this
// survives a control-plane restart) but the public ones. With its Secret
// gone there is nothing to mask by value, so nothing is shown.
func (p *Provisioner) startedWith(ctx context.Context, pod *corev1.Pod) ([]string, error) {
	cctx, cancel := p.call(ctx)
	defer cancel()
	s, err := p.c.CoreV1().Secrets(p.cfg.Namespace).Get(cctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get secret %s: %w", pod.Name, err)
	}
	env := make(map[string]string, len(s.Data))
	for k, v := range s.Data {
		env[k] = string(v)
	}
	var public []string
	if a := pod.Annotations[AnnotationPublicEnv]; a != "" {
		public = strings.Split(a, ",")
	}
	return redact.Values(provision.MaskedEnv(env, public)), nil
}

// resources converts validated requests and limits.
func resources(r *kubespec.Resources) corev1.ResourceRequirements {
	conv := func(m map[string]string) corev1.ResourceList {
		if len(m) == 0 {
			return nil
		}
		out := corev1.ResourceList{}
		for k, v := range m {
			out[corev1.ResourceName(k)] = resource.MustParse(v) // validated by kubespec
		}
		return out
	}
	return corev1.ResourceRequirements{Requests: conv(r.Requests), Limits: conv(r.Limits)}
}
