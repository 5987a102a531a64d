package process

import (
	"os"
	"strings"
	"sync"
)

var (
	nodeOnce sync.Once
	nodeName string
)

// Node names this host's process table: the host name and the kernel's
// boot id, so that a reboot (where every pid is new) is another node too.
func (p *Provisioner) Node() string {
	nodeOnce.Do(func() {
		host, _ := os.Hostname()
		boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
		nodeName = host + "/" + strings.TrimSpace(string(boot))
	})
	return nodeName
}
