package pool

import (
	"sync/atomic"

	"github.com/swarmvpn/swarmvpn/internal/meter"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Stats is a snapshot of what a pool has carried.
type Stats struct {
	Links int // links open now: the active one, the standby, probes

	// Activations counts the links that became active: the first, and
	// each failover, reconnect or switch to a nearer exit after it.
	Activations uint64
	// LinkDowns counts active links lost; DialFailures, attempts to link
	// to an exit that failed or found it unsuitable.
	LinkDowns, DialFailures uint64

	FlowsOpen int64            // flows open now through the pool, inbound ones included
	UDPOpen   int64            // of those, UDP associations
	Flows     meter.FlowCounts // flows since start, by kind (Connect, UDP, Inbound)
	// InboundBytesIn and InboundBytesOut count what connections that
	// arrived at the forwarded port carried from the internet to the local
	// target and back, as they pass. Outbound bytes are counted by
	// the proxies that splice them.
	InboundBytesIn, InboundBytesOut uint64
	// UDPMalformed counts frames from exits that were not datagrams, and
	// skipped; UDPUnsendable, datagrams that could not be framed (too long
	// for their address), and dropped.
	UDPMalformed, UDPUnsendable uint64
}

// counters are the counters behind Stats.
type counters struct {
	flows                                meter.Flows
	activations, linkDowns, dialFailures atomic.Uint64
	udpMalformed, udpUnsendable          atomic.Uint64
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	links := 0
	for _, c := range p.cands {
		if c.sess != nil {
			links++
		}
	}
	p.mu.Unlock()
	c := &p.stats
	in, out := c.flows.Bytes()
	return Stats{
		Links:           links,
		Activations:     c.activations.Load(),
		LinkDowns:       c.linkDowns.Load(),
		DialFailures:    c.dialFailures.Load(),
		FlowsOpen:       c.flows.Open(),
		UDPOpen:         c.flows.OpenOf(wire.KindUDP),
		Flows:           c.flows.Counts(),
		InboundBytesIn:  in,
		InboundBytesOut: out,
		UDPMalformed:    c.udpMalformed.Load(),
		UDPUnsendable:   c.udpUnsendable.Load(),
	}
}
