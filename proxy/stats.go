package proxy

import "sync/atomic"

// FlowStats counts the TCP flows a proxy has carried to the Dialer: SOCKS5
// CONNECTs, HTTP CONNECT tunnels and forwarded HTTP requests. A flow is
// counted, with its bytes, when it ends: the copy loop does no extra work.
// Bytes are payload: protocol headers excluded.
type FlowStats struct {
	Flows    uint64 // flows that ended
	BytesIn  uint64 // from the far side to clients
	BytesOut uint64 // from clients to the far side
}

type flowCounters struct{ flows, bytesIn, bytesOut atomic.Uint64 }

// ended counts a finished flow and its bytes.
func (c *flowCounters) ended(in, out int64) {
	c.flows.Add(1)
	c.bytesIn.Add(uint64(max(in, 0)))
	c.bytesOut.Add(uint64(max(out, 0)))
}

func (c *flowCounters) stats() FlowStats {
	return FlowStats{Flows: c.flows.Load(), BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load()}
}

// FlowStats returns the totals of the CONNECT flows that have ended.
func (s *SOCKS) FlowStats() FlowStats { return s.flows.stats() }

// FlowStats returns the totals of the tunnels and requests that have ended.
func (h *HTTP) FlowStats() FlowStats { return h.flows.stats() }
