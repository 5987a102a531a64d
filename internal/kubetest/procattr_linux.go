package kubetest

import "syscall"

// procAttr makes the kernel kill a component when the test binary dies
// (a test killed by its timeout must not leave an API server behind).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
