//go:build !race

package testnet

// raceEnabled reports whether the tests run under the race detector, which
// dies above 8128 live goroutines.
const raceEnabled = false
