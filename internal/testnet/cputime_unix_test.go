//go:build unix

package testnet

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time, user and system, the process has used so far.
// On a shared machine it is a steadier measure of a path's cost than
// throughput.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
