//go:build !unix

package testnet

import "testing"

// raiseFileLimit skips the test where there is no setrlimit(2).
func raiseFileLimit(t *testing.T, need uint64) {
	t.Skipf("soak: needs %d open files, and this system has no setrlimit", need)
}
