package exit

import (
	"sync/atomic"
)

// LimitStats counts what the exit's per-client limits held back.
type LimitStats struct {
	// WindowGrowthRefused counts stream receive-window growths refused
	// because the client's links had reserved MaxBufferPerClient.
	WindowGrowthRefused uint64
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

// LimitStats returns a snapshot of the limit counters.
func (e *Server) LimitStats() LimitStats {
	c := &e.limits
	return LimitStats{
		WindowGrowthRefused: c.windowRefused.Load(), BufferPeak: c.bufferPeak.Load(),
		RateLimitedBytes: c.rateBytes.Load(), HalfOpenExpired: c.halfOpenExpired.Load(),
		ClientsDropped: c.clientsDropped.Load(), LinksRefused: c.linksRefused.Load(),
	}
}
