package exit

import (
	"hash/maphash"
	"net"
	"net/netip"
	"sync"
	"time"
)

// admitInbound decides whether a connection that arrived on c's forwarded
// port is carried to c: its remote address must be within its rate of new
// connections, and c within its cap of inbound connections. A refused
// connection is reset at once, so that it holds nothing at the exit, not
// even a TIME-WAIT socket. An admitted one counts in c.inbound until the
// caller releases it.
func (e *Server) admitInbound(conn *net.TCPConn, c *client) bool {
	remote := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	refuse := func() bool {
		conn.SetLinger(0)
		conn.Close()
		return false
	}
	if !e.inboundRate.allow(remote, time.Now()) {
		e.stats.fwd.refusedRate.Add(1)
		return refuse()
	}
	if c.inbound.Add(1) > int32(e.maxInbound()) {
		c.inbound.Add(-1)
		e.stats.fwd.refusedCap.Add(1)
		return refuse()
	}
	return true
}

func (e *Server) maxInbound() int {
	if e.cfg.MaxInboundPerClient > 0 {
		return e.cfg.MaxInboundPerClient
	}
	return 512
}

// rateBuckets is how many token buckets addrRate keeps: remote addresses
// share them by a keyed hash, so the memory is fixed however many
// addresses an attacker has, and an innocent address shares a bucket with
// a given other one with a chance of 1 in 4096.
const rateBuckets = 4096

// addrRate bounds how often each remote address (an IPv6 one by its /64)
// may open a new connection: a token bucket per address, refilled at
// perSec and holding at most burst.
type addrRate struct {
	perSec, burst float64
	seed          maphash.Seed

	mu      sync.Mutex
	buckets *[rateBuckets]tokenBucket
}

type tokenBucket struct {
	tokens float64
	last   time.Time
}

func newAddrRate(perSec int) *addrRate {
	return &addrRate{perSec: float64(perSec), burst: 4 * float64(perSec), seed: maphash.MakeSeed(),
		buckets: new([rateBuckets]tokenBucket)}
}

// allow takes a token for a connection from a at now, if its bucket has
// one.
func (r *addrRate) allow(a netip.Addr, now time.Time) bool {
	b := hostOf(a).As16()
	i := maphash.Bytes(r.seed, b[:]) % rateBuckets
	r.mu.Lock()
	defer r.mu.Unlock()
	tb := &r.buckets[i]
	if tb.last.IsZero() {
		tb.tokens = r.burst
	} else {
		tb.tokens = min(r.burst, tb.tokens+now.Sub(tb.last).Seconds()*r.perSec)
	}
	tb.last = now
	if tb.tokens < 1 {
		return false
	}
	tb.tokens--
	return true
}
