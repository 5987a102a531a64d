package kubetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ReadManifests decodes every object of the YAML files (documents split by
// ---) into typed objects.
func ReadManifests(paths ...string) ([]runtime.Object, error) {
	var objs []runtime.Object
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		for doc := range strings.SplitSeq(string(b), "\n---\n") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
			}
			objs = append(objs, obj)
		}
	}
	return objs, nil
}

// Create creates one object of the kinds deploy/kubernetes holds.
func Create(ctx context.Context, c kubernetes.Interface, obj runtime.Object, opts metav1.CreateOptions) error {
	var err error
	switch o := obj.(type) {
	case *corev1.Namespace:
		_, err = c.CoreV1().Namespaces().Create(ctx, o, opts)
	case *corev1.ServiceAccount:
		_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
	case *corev1.Secret:
		_, err = c.CoreV1().Secrets(o.Namespace).Create(ctx, o, opts)
	case *corev1.Service:
		_, err = c.CoreV1().Services(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.Role:
		_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.RoleBinding:
		_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, opts)
	case *appsv1.Deployment:
		_, err = c.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
	default:
		return fmt.Errorf("kubetest cannot create a %T", obj)
	}
	return err
}

// Apply reads the manifests and creates their objects as the admin.
func (c *Cluster) Apply(ctx context.Context, paths ...string) error {
	objs, err := ReadManifests(paths...)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		if err := Create(ctx, c.Client, obj, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			return fmt.Errorf("create %T: %w", obj, err)
		}
	}
	return nil
}

// WriteKubeconfig writes a kubeconfig file for cfg (a token or a client
// certificate) with namespace as its context's, for programs that take one.
func WriteKubeconfig(path string, cfg *rest.Config, namespace string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["kubetest"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken,
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "kubetest", Namespace: namespace}
	kc.CurrentContext = "kubetest"
	return clientcmd.WriteToFile(*kc, path)
}
