//go:build !unix

package pgtest

import "runtime"

// startLocal cannot run a cluster here: it relies on unix sockets and on
// switching users. ORGPLANE_TEST_POSTGRES_URL still works.
func startLocal() (*server, error) {
	return nil, &unavailableError{"no local cluster support on " + runtime.GOOS}
}
