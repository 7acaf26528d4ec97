package exit

import (
	"sync/atomic"

	"github.com/swarmvpn/swarmvpn/internal/meter"
	"github.com/swarmvpn/swarmvpn/internal/wire"
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
	// HandshakesPending counts connections whose TLS handshake is in
	// progress now; HandshakesShed, those closed unfinished to make room
	// under MaxHandshakes or MaxHandshakesPerSource (also counted in
	// RefusedHandshake).
	HandshakesPending int
	HandshakesShed    uint64
	// VisitorsShed counts web-site visitors closed to make room under the
	// visitors' own bound (at most 512 at once, 16 from one source).
	VisitorsShed uint64
	// DescOnly counts links admitted only to read the exit's
	// descriptor (relays verifying it), whatever the allow-list;
	// DescOnlyShed, those closed to make room under their bound (at most
	// 32 at once, 4 from one source).
	DescOnly, DescOnlyShed uint64
	// Fallback counts connections served as a web site because they did
	// not prove themselves admitted clients: browsers, probers, garbage,
	// replayed proofs, and refused clients (also counted above).
	Fallback uint64

	FlowsOpen int64            // flows open now, inbound ones included
	Flows     meter.FlowCounts // flows since start, by kind
	// RefusedFlows counts flows refused because their client was at its
	// flow cap; PolicyRefusals, TCP flows to destinations the policy
	// refuses.
	RefusedFlows, PolicyRefusals uint64

	// BytesIn and BytesOut count what TCP flows carried from the internet
	// toward clients and back, as it passes. UDP is in UDPStats.
	BytesIn, BytesOut uint64

	UDP     UDPStats     // UDP associations
	Forward ForwardStats // forwarded ports
	Limits  LimitStats   // what the per-client limits held back
	Relay   RelayStats   // streams relayed to other exits
	Reach   ReachStats   // reach requests answered for other exits
}

// counters are every counter of an exit, grouped as Stats reports them.
type counters struct {
	flows                                             meter.Flows
	linksAccepted, refusedAllowList, refusedHandshake atomic.Uint64
	fallback                                          atomic.Uint64
	descOnly                                          atomic.Uint64
	refusedClients, refusedFlows, policyRefusals      atomic.Uint64

	udp    udpCounters
	fwd    forwardCounters
	limits limitCounters
	relay  relayCounters
	reach  reachCounters
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
		LinksAccepted:     c.linksAccepted.Load(),
		RefusedAllowList:  c.refusedAllowList.Load(),
		RefusedFull:       c.refusedClients.Load(),
		RefusedHandshake:  c.refusedHandshake.Load(),
		HandshakesPending: e.handshakes.pending(),
		HandshakesShed:    e.handshakes.shed.Load(),
		VisitorsShed:      e.visitors.shed.Load(),
		Fallback:          c.fallback.Load(),
		DescOnly:          c.descOnly.Load(),
		DescOnlyShed:      e.descOnly.shed.Load(),
		FlowsOpen:         c.flows.Open(),
		Flows:             c.flows.Counts(),
		RefusedFlows:      c.refusedFlows.Load(),
		PolicyRefusals:    c.policyRefusals.Load(),
		BytesIn:           in,
		BytesOut:          out,
		UDP:               c.udp.snapshot(),
		Forward:           c.fwd.snapshot(),
		Limits:            c.limits.snapshot(),
		Relay:             c.relay.snapshot(),
		Reach:             c.reach.snapshot(),
	}
}

// UDPStats counts what the exit's UDP associations carried and dropped.
type UDPStats struct {
	Associations   uint64 // opened since start
	Active         int64  // open now
	DatagramsOut   uint64 // sent to the internet
	DatagramsIn    uint64 // received from the internet and relayed
	BytesOut       uint64
	BytesIn        uint64
	DropPolicy     uint64 // destination refused by the exit policy
	DropResolve    uint64 // destination name did not resolve
	DropMalformed  uint64 // frame from the client was not a datagram
	DropSend       uint64 // the socket refused the datagram
	DropRate       uint64 // over the client's rate limit (either way)
	DropTooLong    uint64 // over 2 KiB and behind others in one read from the socket: its tail was cut
	RefusedTooMany uint64 // association refused: client at its cap
	ExpiredIdle    uint64 // associations closed for idleness
}

type udpCounters struct {
	associations, datagramsOut, datagramsIn, bytesOut, bytesIn             atomic.Uint64
	dropPolicy, dropResolve, dropMalformed, dropSend, refused, expiredIdle atomic.Uint64
	dropRate, dropTooLong                                                  atomic.Uint64
	active                                                                 atomic.Int64
}

func (c *udpCounters) snapshot() UDPStats {
	return UDPStats{
		Associations: c.associations.Load(), Active: c.active.Load(),
		DatagramsOut: c.datagramsOut.Load(), DatagramsIn: c.datagramsIn.Load(),
		BytesOut: c.bytesOut.Load(), BytesIn: c.bytesIn.Load(),
		DropPolicy: c.dropPolicy.Load(), DropResolve: c.dropResolve.Load(),
		DropMalformed: c.dropMalformed.Load(), DropSend: c.dropSend.Load(),
		RefusedTooMany: c.refused.Load(), ExpiredIdle: c.expiredIdle.Load(),
		DropRate: c.dropRate.Load(), DropTooLong: c.dropTooLong.Load(),
	}
}

// ForwardStats counts inbound forwarding at the exit.
type ForwardStats struct {
	Active  int64  // forwards open now
	Inbound uint64 // connections that arrived on forwarded ports and were carried to the client
	Refused uint64 // of those, ones the client did not take
	// InboundRefusedCap and InboundRefusedRate count the connections reset
	// on arrival: their client was carrying MaxInboundPerClient, or their
	// remote address was over InboundRatePerAddr.
	InboundRefusedCap, InboundRefusedRate uint64
	// Forward requests refused, by reason: the exit's policy, the client
	// holds its share, no port free, its network's rate of new leases.
	RefusedPolicy, RefusedCap, RefusedExhausted, RefusedRate uint64
	// TCPOff is the number of forwarded ports whose TCP listener is closed
	// now because the client's target accepts no TCP; TCPClosings counts
	// the times one was closed.
	TCPOff      int64
	TCPClosings uint64
	Probes      uint64 // reachability probes run for clients
}

type forwardCounters struct {
	active, tcpOff                                          atomic.Int64
	inbound, refused, refusedCap, refusedRate               atomic.Uint64
	leasePolicy, leaseCap, leaseExhausted, leaseRateLimited atomic.Uint64
	tcpClosings, probes                                     atomic.Uint64
}

// countRefusal counts a forward request refused with status s.
func (c *forwardCounters) countRefusal(s wire.Status) {
	switch s {
	case wire.StatusNotAllowed:
		c.leasePolicy.Add(1)
	case wire.StatusForwardCap:
		c.leaseCap.Add(1)
	case wire.StatusForwardRateLimit:
		c.leaseRateLimited.Add(1)
	default:
		c.leaseExhausted.Add(1)
	}
}

func (c *forwardCounters) snapshot() ForwardStats {
	return ForwardStats{Active: c.active.Load(), Inbound: c.inbound.Load(), Refused: c.refused.Load(),
		InboundRefusedCap: c.refusedCap.Load(), InboundRefusedRate: c.refusedRate.Load(),
		RefusedPolicy: c.leasePolicy.Load(), RefusedCap: c.leaseCap.Load(),
		RefusedExhausted: c.leaseExhausted.Load(), RefusedRate: c.leaseRateLimited.Load(),
		TCPOff: c.tcpOff.Load(), TCPClosings: c.tcpClosings.Load(), Probes: c.probes.Load()}
}

// LimitStats counts what the exit's per-client limits held back.
type LimitStats struct {
	// WindowGrowthRefused counts stream receive-window growths refused
	// because the client's links had reserved MaxBufferPerClient.
	WindowGrowthRefused uint64
	// FlowBufferRefused counts large read buffers refused to moving flows
	// because the client's flows held MaxBufferPerClient in large ones; a
	// refused flow asks again on each read that fills its small buffer.
	FlowBufferRefused uint64
	// BufferPeak is the most receive-window memory any one client has
	// reserved at once.
	BufferPeak int64
	// RateLimitedBytes counts the bytes charged to per-client rate
	// limiters, both directions, TCP and UDP.
	RateLimitedBytes uint64
	// HalfOpenExpired counts flows closed because, after one direction had
	// ended, the other carried nothing for HalfOpenTimeout.
	HalfOpenExpired uint64
	// ClientsDropped counts links closed because their client was taken
	// off the allow-list.
	ClientsDropped uint64
	// LinksRefused counts links refused because their client already held
	// as many as it may.
	LinksRefused uint64
}

type limitCounters struct {
	windowRefused, rateBytes, halfOpenExpired, clientsDropped, linksRefused atomic.Uint64
	flowBufferRefused                                                       atomic.Uint64
	bufferPeak                                                              atomic.Int64
}

func (c *limitCounters) notePeak(n int64) {
	for {
		p := c.bufferPeak.Load()
		if n <= p || c.bufferPeak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (c *limitCounters) snapshot() LimitStats {
	return LimitStats{
		WindowGrowthRefused: c.windowRefused.Load(), BufferPeak: c.bufferPeak.Load(),
		RateLimitedBytes: c.rateBytes.Load(), HalfOpenExpired: c.halfOpenExpired.Load(),
		ClientsDropped: c.clientsDropped.Load(), LinksRefused: c.linksRefused.Load(),
		FlowBufferRefused: c.flowBufferRefused.Load(),
	}
}
