//go:build unix

package testnet

import (
	"syscall"
	"testing"
)

// raiseFileLimit raises the process's open-file limit to need, for the
// test's duration, or skips the test when it cannot.
func raiseFileLimit(t *testing.T, need uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skipf("soak: getrlimit: %v", err)
	}
	if rl.Cur < need {
		want := rl
		want.Cur = min(max(need, rl.Cur), rl.Max)
		if want.Cur < need {
			want.Cur, want.Max = need, need
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			t.Skipf("soak: needs %d open files, the limit is %d (hard %d) and cannot be raised: %v; raise it with ulimit -n", need, rl.Cur, rl.Max, err)
		}
		t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl) })
	}
}
