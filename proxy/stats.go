package proxy

import (
	"net"
	"sync/atomic"

	"github.com/swarmvpn/swarmvpn/internal/relay"
)

// FlowStats counts the TCP flows a proxy has carried to the Dialer: SOCKS5
// CONNECTs, HTTP CONNECT tunnels and forwarded HTTP requests. A flow is
// counted when it ends; its bytes as they pass (a forwarded HTTP request's
// when it ends). Bytes are payload: protocol headers excluded.
type FlowStats struct {
	Flows    uint64 // flows that ended
	BytesIn  uint64 // from the far side to clients
	BytesOut uint64 // from clients to the far side
}

type flowCounters struct{ flows, bytesIn, bytesOut atomic.Uint64 }

// ended counts a finished flow and the bytes not counted yet.
func (c *flowCounters) ended(in, out int64) {
	c.flows.Add(1)
	c.bytesIn.Add(uint64(max(in, 0)))
	c.bytesOut.Add(uint64(max(out, 0)))
}

// splice relays a tunnel between a client and its target, counting its
// bytes as they pass, and counts the flow when it ends.
func (c *flowCounters) splice(client, target net.Conn) relay.Result {
	r := relay.SpliceCounting(client, target, &c.bytesOut, &c.bytesIn)
	c.ended(0, 0)
	return r
}

func (c *flowCounters) stats() FlowStats {
	return FlowStats{Flows: c.flows.Load(), BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load()}
}

// FlowStats returns the totals of the CONNECT flows that have ended.
func (s *SOCKS) FlowStats() FlowStats { return s.flows.stats() }

// FlowStats returns the totals of the tunnels and requests that have ended.
func (h *HTTP) FlowStats() FlowStats { return h.flows.stats() }
