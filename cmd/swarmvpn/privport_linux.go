package main

import (
	"os"
	"strconv"
	"strings"
)

// mayBindHTTPS reports whether this process may listen on port 443: it is
// root, holds CAP_NET_BIND_SERVICE, or the system lets anyone bind it.
func mayBindHTTPS() bool {
	if os.Geteuid() == 0 {
		return true
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n <= 443 {
			return true
		}
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			const capNetBindService = 10
			return err == nil && caps&(1<<capNetBindService) != 0
		}
	}
	return false
}
