package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

// TestBenchInterrupt stops a running bench with SIGINT, as Ctrl-C does,
// and checks that the exit and client it started are gone.
func TestBenchInterrupt(t *testing.T) {
	p := start(t, "bench", "--quick")
	testnet.WaitFor(t, "bench to start measuring", func() bool { return strings.Contains(p.output(), "idle flows") })
	children := childrenOf(p.cmd.Process.Pid)
	if len(children) < 2 {
		t.Fatalf("bench runs %d child processes, want an exit and a client", len(children))
	}
	interruptBench(t, p)
	noneRuns(t, children)
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so start after ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			out = append(out, child)
		}
	}
	return out
}

// interruptBench sends bench SIGINT and checks that it ends within 30 s,
// with exit status 1, saying it was interrupted.
func interruptBench(t *testing.T, p *proc) {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("bench did not stop within 30s of SIGINT")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(p.output(), "interrupted") {
		t.Errorf("exit status %d, output:\n%s", code, p.output())
	}
}

// noneRuns checks that none of the processes children still runs.
func noneRuns(t *testing.T, children []int) {
	t.Helper()
	for _, pid := range children {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("child %d still runs after bench ended", pid)
		}
	}
}
