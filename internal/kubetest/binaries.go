// Package kubetest runs a real Kubernetes API server for tests: etcd and
// kube-apiserver, built from their Go modules by scripts/kube-binaries.sh
// into a cache folder, started on loopback with fresh certificates, and a
// test "kubelet" (see Kubelet) that runs pods as local processes.
//
// There is no scheduler, controller manager or real kubelet: Deployments get
// no pods, namespaces never finish deleting, and pods stay Pending unless a
// Kubelet runs them. Tests that need the API server skip when the binaries
// are not cached, or fail when ORGPLANE_TEST_REQUIRE_KUBE=1.
package kubetest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Versions built by scripts/kube-binaries.sh; keep the two in step.
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.7.3"
)

// EnvRequireKube, set to 1, turns "no kube binaries" from a skip into a
// failure, so that CI, which builds them, cannot silently skip.
const EnvRequireKube = "ORGPLANE_TEST_REQUIRE_KUBE"

// EnvCache names the cache folder (as for scripts/kube-binaries.sh).
const EnvCache = "ORGPLANE_KUBE_CACHE"

// CacheDir is where scripts/kube-binaries.sh puts the binaries:
// $ORGPLANE_KUBE_CACHE, else $XDG_CACHE_HOME/orgplane/kube, else
// $HOME/.cache/orgplane/kube.
func CacheDir() (string, error) {
	if d := os.Getenv(EnvCache); d != "" {
		return d, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the cache folder: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "orgplane", "kube"), nil
}

// Binaries returns the paths of the cached kube-apiserver and etcd.
func Binaries() (apiserver, etcd string, err error) {
	dir, err := CacheDir()
	if err != nil {
		return "", "", err
	}
	apiserver = filepath.Join(dir, "kube-apiserver-"+KubeVersion, "kube-apiserver")
	etcd = filepath.Join(dir, "etcd-"+EtcdVersion, "etcd")
	var missing []error
	for _, p := range []string{apiserver, etcd} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, fmt.Errorf("%s not built", p))
		}
	}
	if len(missing) > 0 {
		return "", "", fmt.Errorf("%w (run scripts/kube-binaries.sh)", errors.Join(missing...))
	}
	return apiserver, etcd, nil
}

// RequireBinaries returns the binaries' paths, or skips the test (fails it
// when ORGPLANE_TEST_REQUIRE_KUBE=1) when they are not cached.
func RequireBinaries(t testing.TB) (apiserver, etcd string) {
	t.Helper()
	apiserver, etcd, err := Binaries()
	if err != nil {
		if os.Getenv(EnvRequireKube) == "1" {
			t.Fatalf("kube binaries missing and %s=1: %v", EnvRequireKube, err)
		}
		t.Skipf("kube binaries missing, skipping (set %s=1 to fail instead): %v", EnvRequireKube, err)
	}
	return apiserver, etcd
}
