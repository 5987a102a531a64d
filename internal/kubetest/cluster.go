package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// StartTimeout bounds how long Start waits for /readyz. It is measured in
// seconds on an idle machine; the margin is for a busy one under -race.
const StartTimeout = 2 * time.Minute

// stopGrace is how long each component gets to exit after SIGTERM.
const stopGrace = 20 * time.Second

// Cluster is a running etcd + kube-apiserver on loopback.
type Cluster struct {
	// Config authenticates as a cluster admin (group system:masters).
	Config *rest.Config
	// Client is a clientset over Config.
	Client kubernetes.Interface
	// URL is the API server's https URL.
	URL string
	// StartupTime is how long the API server took to answer /readyz.
	StartupTime time.Duration

	ca              *authority
	etcd, apiserver *component
}

// component is one running binary and its log.
type component struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{} // closed when the process ended
	err    error         // its wait status, once exited is closed
}

func startComponent(name, bin, logPath string, args ...string) (*component, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &component{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.exited)
	}()
	return c, nil
}

// stop sends SIGTERM, and SIGKILL when the process has not exited after
// stopGrace. It returns when the process has ended.
func (c *component) stop() {
	if c == nil {
		return
	}
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(stopGrace):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// tail returns the last bytes of the component's log, for error messages.
func (c *component) tail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Start starts a cluster for the test and stops it at cleanup (the API
// server first, then etcd: sent SIGTERM together, the API server's graceful
// shutdown hangs). It skips the test when the binaries are not cached (see
// RequireBinaries).
func Start(t testing.TB) *Cluster {
	t.Helper()
	apiserver, etcd := RequireBinaries(t)
	c, err := StartCluster(t.TempDir(), apiserver, etcd)
	if err != nil {
		t.Fatalf("start kube cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	t.Logf("kube-apiserver %s ready in %s at %s", KubeVersion, c.StartupTime.Round(time.Millisecond), c.URL)
	return c
}

// StartCluster starts etcd and the API server with state, certificates and
// logs in dir, and waits until /readyz answers ok.
func StartCluster(dir, apiserverBin, etcdBin string) (*Cluster, error) {
	var err error
	// A free port is found by binding :0 and letting go of it; another
	// process may take it in between, so a start that fails is tried again.
	for attempt := range 3 {
		sub := filepath.Join(dir, "try"+strconv.Itoa(attempt))
		var c *Cluster
		if c, err = startOnce(sub, apiserverBin, etcdBin); err == nil {
			return c, nil
		}
	}
	return nil, err
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func startOnce(dir, apiserverBin, etcdBin string) (_ *Cluster, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]

	ca, err := newAuthority()
	if err != nil {
		return nil, err
	}
	c := &Cluster{ca: ca}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	serverCert, serverKey, err := ca.issue("kube-apiserver", nil, []net.IP{net.IPv4(127, 0, 0, 1)},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"})
	if err != nil {
		return nil, err
	}
	adminCert, adminKey, err := ca.issue("kubetest-admin", []string{"system:masters"}, nil, nil)
	if err != nil {
		return nil, err
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	for name, data := range map[string][]byte{"ca.crt": ca.certPEM, "server.crt": serverCert, "server.key": serverKey} {
		if err := os.WriteFile(p(name), data, 0o600); err != nil {
			return nil, err
		}
	}
	if err := writeKeyPair(p("sa.key"), p("sa.pub")); err != nil {
		return nil, err
	}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	c.etcd, err = startComponent("etcd", etcdBin, p("etcd.log"),
		"--name=kubetest", "--data-dir="+p("etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--log-level=warn", "--quota-backend-bytes=1073741824",
	)
	if err != nil {
		return nil, err
	}
	if err := waitFor(context.Background(), StartTimeout, c.etcd, func(ctx context.Context) bool {
		return httpOK(ctx, http.DefaultClient, etcdURL+"/health")
	}); err != nil {
		return nil, fmt.Errorf("etcd not healthy: %w\n%s", err, c.etcd.tail())
	}

	start := time.Now()
	c.apiserver, err = startComponent("kube-apiserver", apiserverBin, p("kube-apiserver.log"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--endpoint-reconciler-type=none",
		"--cert-dir="+p("certs"),
		"--tls-cert-file="+p("server.crt"), "--tls-private-key-file="+p("server.key"),
		"--client-ca-file="+p("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+p("sa.pub"),
		"--service-account-signing-key-file="+p("sa.key"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		// No controller creates default service accounts here.
		"--disable-admission-plugins=ServiceAccount",
		// The test kubelet serves pods/log on loopback with a self-signed
		// certificate; the API server reaches it by its InternalIP.
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
	)
	if err != nil {
		return nil, err
	}
	c.URL = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.Config = &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   ca.certPEM,
			CertData: adminCert,
			KeyData:  adminKey,
		},
		QPS:   200,
		Burst: 400,
	}
	rc, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return nil, err
	}
	if err := waitFor(context.Background(), StartTimeout, c.apiserver, func(ctx context.Context) bool {
		return httpOK(ctx, rc, c.URL+"/readyz")
	}); err != nil {
		return nil, fmt.Errorf("kube-apiserver not ready: %w\n%s", err, c.apiserver.tail())
	}
	c.StartupTime = time.Since(start)
	c.Client, err = kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// waitFor checks cond every 100ms until it holds, the component exits, or
// timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, c *component, cond func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
		ok := cond(callCtx)
		callCancel()
		if ok {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited: %v", c.name, c.err)
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready within %s", c.name, timeout)
		case <-tick.C:
		}
	}
}

func httpOK(ctx context.Context, c *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	res, err := c.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// Stop stops the API server, then etcd, and waits for both. Safe to call
// more than once.
func (c *Cluster) Stop() {
	c.apiserver.stop()
	c.etcd.stop()
}

// UserConfig returns a config that authenticates with a client certificate
// as user in groups (no group: only system:authenticated, and RBAC gives
// nothing beyond discovery).
func (c *Cluster) UserConfig(user string, groups ...string) (*rest.Config, error) {
	cert, key, err := c.ca.issue(user, groups, nil, nil)
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            c.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.certPEM, CertData: cert, KeyData: key},
		QPS:             200,
		Burst:           400,
	}, nil
}

// ServiceAccountConfig returns a config that authenticates as the service
// account namespace/name with a token the API server issued for it (the
// TokenRequest API, as a projected token in a pod would be). The service
// account must exist.
func (c *Cluster) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	secs := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("request a token for service account %s/%s: %w", namespace, name, err)
	}
	return &rest.Config{
		Host:            c.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.certPEM},
		BearerToken:     tr.Status.Token,
		QPS:             200,
		Burst:           400,
	}, nil
}

// Logs returns the tails of the API server's and etcd's logs, for a test
// that wants to show them on failure.
func (c *Cluster) Logs() string {
	var b bytes.Buffer
	for _, comp := range []*component{c.apiserver, c.etcd} {
		if comp != nil {
			fmt.Fprintf(&b, "== %s\n%s\n", comp.name, strings.TrimSpace(comp.tail()))
		}
	}
	return b.String()
}
