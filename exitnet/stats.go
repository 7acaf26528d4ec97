package exitnet

import (
	"net"
	"sync/atomic"

	"github.com/swarmvpn/swarmvpn/internal/relay"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// FlowCounts counts flows by kind: streams of a link, each one request.
type FlowCounts struct {
	Connect    uint64 // TCP flows to a destination
	UDP        uint64 // UDP associations
	Inbound    uint64 // connections that arrived at a forwarded port
	Forward    uint64 // port forward requests (exit only)
	Descriptor uint64 // descriptor requests (exit only)
}

// flowCounters counts the flows of an exit or a pool, and their bytes as
// the relay writes them.
type flowCounters struct {
	open              atomic.Int64
	byKind            [wire.KindDescriptor + 1]atomic.Uint64
	bytesIn, bytesOut atomic.Uint64 // from the internet toward the client, and back
}

// begin counts a flow of kind k as open and returns the function that ends
// it.
func (f *flowCounters) begin(k wire.Kind) (end func()) {
	if int(k) < len(f.byKind) {
		f.byKind[k].Add(1)
	}
	f.open.Add(1)
	return func() { f.open.Add(-1) }
}

// splice relays a flow between the client's side and the internet's side,
// counting its bytes as they pass.
func (f *flowCounters) splice(client, internet net.Conn) relay.Result {
	return relay.SpliceCounting(client, internet, &f.bytesOut, &f.bytesIn)
}

func (f *flowCounters) counts() FlowCounts {
	return FlowCounts{
		Connect:    f.byKind[wire.KindConnect].Load(),
		UDP:        f.byKind[wire.KindUDP].Load(),
		Inbound:    f.byKind[wire.KindInbound].Load(),
		Forward:    f.byKind[wire.KindForward].Load(),
		Descriptor: f.byKind[wire.KindDescriptor].Load(),
	}
}

// ExitStats is a snapshot of what an exit carries and refuses.
type ExitStats struct {
	Links   int // links open now
	Clients int // clients (peer IDs) with a link open now; a client whose
	// last link went counts until its flows have ended
	Streams int // flows, UDP associations and forwards being served now

	LinksAccepted uint64 // links that completed the handshake and were admitted
	// Links refused, by reason: the client is not on the allow-list, the
	// exit serves as many clients as it allows, the handshake failed.
	RefusedAllowList, RefusedFull, RefusedHandshake uint64

	FlowsOpen int64      // flows open now, inbound ones included
	Flows     FlowCounts // flows since start, by kind
	// RefusedFlows counts flows refused because their client was at its
	// flow cap; PolicyRefusals, TCP flows to destinations the policy
	// refuses.
	RefusedFlows, PolicyRefusals uint64

	// BytesIn and BytesOut count what TCP flows carried from the internet
	// toward clients and back, as it passes. UDP is in UDPStats.
	BytesIn, BytesOut uint64
}

// exitCounters are the counters behind ExitStats that other files do not
// keep.
type exitCounters struct {
	flows                                             flowCounters
	linksAccepted, refusedAllowList, refusedHandshake atomic.Uint64
	policyRefusals                                    atomic.Uint64
}

// Stats returns a snapshot of the exit's counters.
func (e *Exit) Stats() ExitStats {
	e.mu.Lock()
	links, clients := len(e.sessions), len(e.clients)
	streams := 0
	for _, c := range e.clients {
		streams += int(c.streams.Load())
	}
	e.mu.Unlock()
	c := &e.stats
	return ExitStats{
		Links: links, Clients: clients, Streams: streams,
		LinksAccepted:    c.linksAccepted.Load(),
		RefusedAllowList: c.refusedAllowList.Load(),
		RefusedFull:      e.refusedClients.Load(),
		RefusedHandshake: c.refusedHandshake.Load(),
		FlowsOpen:        c.flows.open.Load(),
		Flows:            c.flows.counts(),
		RefusedFlows:     e.refusedStreams.Load(),
		PolicyRefusals:   c.policyRefusals.Load(),
		BytesIn:          c.flows.bytesIn.Load(),
		BytesOut:         c.flows.bytesOut.Load(),
	}
}

// PoolStats is a snapshot of what a pool has carried.
type PoolStats struct {
	Links int // links open now: the active one, the standby, probes

	// Activations counts the links that became active: the first, and
	// each failover, reconnect or switch to a nearer exit after it.
	Activations uint64
	// LinkDowns counts active links lost; DialFailures, attempts to link
	// to an exit that failed or found it unsuitable.
	LinkDowns, DialFailures uint64

	FlowsOpen int64      // flows open now through the pool, inbound ones included
	Flows     FlowCounts // flows since start, by kind (Connect, UDP, Inbound)
	// InboundBytesIn and InboundBytesOut count what connections that
	// arrived at the forwarded port carried from the internet to the local
	// target and back, as they pass. Outbound bytes are counted by
	// the proxies that splice them.
	InboundBytesIn, InboundBytesOut uint64
}

// poolCounters are the counters behind PoolStats.
type poolCounters struct {
	flows                                flowCounters
	activations, linkDowns, dialFailures atomic.Uint64
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	links := 0
	for _, c := range p.cands {
		if c.sess != nil {
			links++
		}
	}
	p.mu.Unlock()
	c := &p.stats
	return PoolStats{
		Links:           links,
		Activations:     c.activations.Load(),
		LinkDowns:       c.linkDowns.Load(),
		DialFailures:    c.dialFailures.Load(),
		FlowsOpen:       c.flows.open.Load(),
		Flows:           c.flows.counts(),
		InboundBytesIn:  c.flows.bytesIn.Load(),
		InboundBytesOut: c.flows.bytesOut.Load(),
	}
}
