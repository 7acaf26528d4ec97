package exit

import (
	"sync/atomic"

	"github.com/swarmvpn/swarmvpn/internal/meter"
)

// Stats is a snapshot of what an exit carries and refuses.
type Stats struct {
	Links   int // links open now
	Clients int // clients (peer IDs) with a link open now; a client whose
	// last link went counts until its flows have ended
	Streams int // flows, UDP associations and forwards being served now

	LinksAccepted uint64 // links that completed the handshake and were admitted
	// Links refused, by reason: the client is not on the allow-list, the
	// exit serves as many clients as it allows, the handshake failed.
	RefusedAllowList, RefusedFull, RefusedHandshake uint64

	FlowsOpen int64            // flows open now, inbound ones included
	Flows     meter.FlowCounts // flows since start, by kind
	// RefusedFlows counts flows refused because their client was at its
	// flow cap; PolicyRefusals, TCP flows to destinations the policy
	// refuses.
	RefusedFlows, PolicyRefusals uint64

	// BytesIn and BytesOut count what TCP flows carried from the internet
	// toward clients and back, as it passes. UDP is in UDPStats.
	BytesIn, BytesOut uint64
}

// exitCounters are the counters behind Stats that other files do not
// keep.
type exitCounters struct {
	flows                                             meter.Flows
	linksAccepted, refusedAllowList, refusedHandshake atomic.Uint64
	policyRefusals                                    atomic.Uint64
}

// Stats returns a snapshot of the exit's counters.
func (e *Server) Stats() Stats {
	e.mu.Lock()
	links, clients := len(e.sessions), len(e.clients)
	streams := 0
	for _, c := range e.clients {
		streams += int(c.streams.Load())
	}
	e.mu.Unlock()
	c := &e.stats
	in, out := c.flows.Bytes()
	return Stats{
		Links: links, Clients: clients, Streams: streams,
		LinksAccepted:    c.linksAccepted.Load(),
		RefusedAllowList: c.refusedAllowList.Load(),
		RefusedFull:      e.refusedClients.Load(),
		RefusedHandshake: c.refusedHandshake.Load(),
		FlowsOpen:        c.flows.Open(),
		Flows:            c.flows.Counts(),
		RefusedFlows:     e.refusedStreams.Load(),
		PolicyRefusals:   c.policyRefusals.Load(),
		BytesIn:          in,
		BytesOut:         out,
	}
}
