// Package statefile is how swarmvpn keeps small state files on disk: a
// file replaced whole and atomically (WriteAtomic), and a Flusher that
// writes such a file in the background, coalescing a burst of changes into
// a write or two and never putting an older state after a newer one.
//
// statefile imports nothing from swarmvpn.
package statefile
