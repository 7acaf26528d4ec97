package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

// TestBenchInterruptUTP stops bench with SIGINT while its uTP workload
// runs, and checks that the libtorrent processes it started are gone, and
// their files with them.
func TestBenchInterruptUTP(t *testing.T) {
	if testing.Short() {
		t.Skip("real torrent clients are skipped with -short")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import libtorrent").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-libtorrent is not importable under /usr/bin/python3 (%v); .ci/run installs it", err)
		}
		t.Skipf("python3-libtorrent not installed (apt-get install python3-libtorrent): %v", err)
	}
	p := start(t, "bench", "--direct", "--workloads", "utp", "--utp-size", "32", "--rounds", "50")
	// Both seeders, then a leecher: three python processes.
	var pythons []int
	testnet.WaitFor(t, "the seeders and a leecher", func() bool {
		pythons = pythons[:0]
		for _, pid := range childrenOf(p.cmd.Process.Pid) {
			if cmdline(pid) != "" && strings.Contains(cmdline(pid), "utp.py") {
				pythons = append(pythons, pid)
			}
		}
		return len(pythons) == 3
	})
	// The script's directory: /usr/bin/python3 DIR/utp.py ...
	dir := filepath.Dir(strings.Fields(cmdline(pythons[0]))[1])
	if _, err := os.Stat(filepath.Join(dir, "utp.py")); err != nil {
		t.Fatalf("the uTP workload's directory: %v", err)
	}
	interruptBench(t, p)
	for _, pid := range pythons {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("libtorrent process %d (%s) still runs after bench ended", pid, cmdline(pid))
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is left behind (%v)", dir, err)
	}
}

// cmdline returns the command line of process pid, its arguments joined
// by spaces; "" if it has ended.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.TrimRight(bytes.ReplaceAll(b, []byte{0}, []byte{' '}), " "))
}
