// Package meter counts the flows of an exit or a client's pool by kind, and
// the bytes they carry as they pass.
//
// meter imports internal/relay and internal/wire only.
package meter

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

// Flows counts the flows of an exit or a pool, and their bytes as the relay
// writes them. The zero value is ready.
type Flows struct {
	open              atomic.Int64
	openByKind        [wire.KindDescriptor + 1]atomic.Int64
	byKind            [wire.KindDescriptor + 1]atomic.Uint64
	bytesIn, bytesOut atomic.Uint64 // from the internet toward the client, and back
}

// Begin counts a flow of kind k as open and returns the function that ends
// it.
func (f *Flows) Begin(k wire.Kind) (end func()) {
	if int(k) >= len(f.byKind) {
		f.open.Add(1)
		return func() { f.open.Add(-1) }
	}
	f.byKind[k].Add(1)
	f.openByKind[k].Add(1)
	f.open.Add(1)
	return func() { f.open.Add(-1); f.openByKind[k].Add(-1) }
}

// Splice relays a flow between the client's side and the internet's side,
// counting its bytes as they pass; its moving buffers come from budget
// (nil: no bound).
func (f *Flows) Splice(client, internet net.Conn, budget relay.Budget) relay.Result {
	return relay.SpliceBudget(client, internet, &f.bytesOut, &f.bytesIn, budget)
}

// Open counts the flows open now.
func (f *Flows) Open() int64 { return f.open.Load() }

// OpenOf counts the flows of kind k open now.
func (f *Flows) OpenOf(k wire.Kind) int64 {
	if int(k) >= len(f.openByKind) {
		return 0
	}
	return f.openByKind[k].Load()
}

// Bytes returns the bytes carried from the internet toward the client (in)
// and back (out).
func (f *Flows) Bytes() (in, out uint64) { return f.bytesIn.Load(), f.bytesOut.Load() }

// Counts returns the flows begun since the start, by kind.
func (f *Flows) Counts() FlowCounts {
	return FlowCounts{
		Connect:    f.byKind[wire.KindConnect].Load(),
		UDP:        f.byKind[wire.KindUDP].Load(),
		Inbound:    f.byKind[wire.KindInbound].Load(),
		Forward:    f.byKind[wire.KindForward].Load(),
		Descriptor: f.byKind[wire.KindDescriptor].Load(),
	}
}
