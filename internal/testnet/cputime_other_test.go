//go:build !unix

package testnet

import "time"

// cpuTime is 0 where getrusage(2) is missing: the benchmarks then report
// no CPU cost.
func cpuTime() time.Duration { return 0 }
