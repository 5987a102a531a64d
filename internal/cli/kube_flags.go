package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orgplane/orgplane/internal/server"
)

// kubeFlags configure the kubernetes runtime. It is enabled only when
// configured: a kubeconfig is named, or orgplane runs in a pod (the
// in-cluster config).
type kubeFlags struct {
	kubeconfig string
	namespace  string
	instance   string
	agentImage string
}

// inClusterNamespaceFile is where a pod finds its own namespace.
const inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func (k *kubeFlags) add(f *pflag.FlagSet) {
	f.StringVar(&k.kubeconfig, "kubeconfig", os.Getenv("ORGPLANE_KUBECONFIG"), "kubeconfig file of the cluster that runs kubernetes boxes; in a pod the in-cluster config is used without it; neither: the kubernetes runtime is off (env ORGPLANE_KUBECONFIG)")
	f.StringVar(&k.namespace, "kube-namespace", os.Getenv("ORGPLANE_KUBE_NAMESPACE"), "namespace of the kubernetes boxes' pods; default: the kubeconfig context's, or the pod's own (env ORGPLANE_KUBE_NAMESPACE)")
	f.StringVar(&k.agentImage, "kube-agent-image", os.Getenv("ORGPLANE_KUBE_AGENT_IMAGE"), "image of a kubernetes box whose spec names none: the orgplane image, whose default command is the reference agent (env ORGPLANE_KUBE_AGENT_IMAGE)")
	f.StringVar(&k.instance, "kube-instance", envOr("ORGPLANE_KUBE_INSTANCE", "orgplane"), "label value naming this install on its pods; every replica of one install uses the same (env ORGPLANE_KUBE_INSTANCE)")
}

// apply builds the client when the runtime is configured.
func (k *kubeFlags) apply(cfg *server.Config) error {
	var rc *rest.Config
	ns := k.namespace
	switch {
	case k.kubeconfig != "":
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: k.kubeconfig}, &clientcmd.ConfigOverrides{})
		var err error
		if rc, err = cc.ClientConfig(); err != nil {
			return fmt.Errorf("--kubeconfig %s: %w", k.kubeconfig, err)
		}
		if ns == "" {
			if ns, _, err = cc.Namespace(); err != nil {
				return fmt.Errorf("--kubeconfig %s: %w", k.kubeconfig, err)
			}
		}
	default:
		var err error
		rc, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			if k.namespace != "" {
				return errors.New("--kube-namespace needs --kubeconfig (or running in a pod)")
			}
			return nil // not configured: the runtime is off
		}
		if err != nil {
			return fmt.Errorf("in-cluster kubernetes config: %w", err)
		}
		if ns == "" {
			b, err := os.ReadFile(inClusterNamespaceFile)
			if err != nil {
				return fmt.Errorf("read the pod's namespace (or pass --kube-namespace): %w", err)
			}
			ns = strings.TrimSpace(string(b))
		}
	}
	if ns == "" {
		ns = "default"
	}
	rc.UserAgent = "orgplane"
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	cfg.Kube = &server.KubeConfig{Client: c, Namespace: ns, Instance: k.instance}
	cfg.Runtime.KubeAgentImage = k.agentImage
	return nil
}
