//go:build !linux

package udpbatch

import (
	"errors"
	"net/netip"
)

// ErrNoSocket is QueueProbe.Queue's answer when no UDP socket on this host
// receives for the destination.
var ErrNoSocket = errors.New("udpbatch: no local socket for that destination")

// QueueProbe reads how full another UDP socket's receive queue is; only
// Linux has one (rqueue_linux.go).
type QueueProbe struct{}

// NewQueueProbe reports that this system has no probe.
func NewQueueProbe() (*QueueProbe, error) {
	return nil, errors.New("udpbatch: no receive queue probe on this system")
}

// Close does nothing.
func (p *QueueProbe) Close() error { return nil }

// Queue reports that this system has no probe.
func (p *QueueProbe) Queue(src, dst netip.AddrPort) (queued, limit int, err error) {
	return 0, 0, errors.New("udpbatch: no receive queue probe on this system")
}
