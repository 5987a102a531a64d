package kubernetes

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8s "k8s.io/client-go/kubernetes"
)

func createApps(ctx context.Context, c k8s.Interface, obj runtime.Object, opts metav1.CreateOptions) error {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		_, err := c.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
		return err
	}
	return fmt.Errorf("no create for %T", obj)
}
