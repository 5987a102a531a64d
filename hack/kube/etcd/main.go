// Command etcd is the upstream etcd server, built from its Go module so that
// tests can run a real API server's storage. See scripts/kube-binaries.sh.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
