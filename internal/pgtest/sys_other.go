//go:build unix && !linux

package pgtest

import "syscall"

// setParentDeathSignal does nothing: only Linux has a parent-death signal.
// Here a killed test binary leaves its postgres running (in an opg* folder
// under TMPDIR) until it is stopped by hand; the sweep skips live clusters.
func setParentDeathSignal(*syscall.SysProcAttr) {}

// fastBase reports no memory-backed folder; the cluster goes in TMPDIR.
func fastBase() (string, bool) { return "", false }
