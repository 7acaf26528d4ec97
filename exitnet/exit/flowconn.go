package exit

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"golang.org/x/time/rate"

	"github.com/swarmvpn/swarmvpn/internal/relay"
)

// minBurst is the smallest burst of a per-client rate limiter: a full
// relay buffer and then some, so one read or one datagram never has to be
// split to pass.
const minBurst = 64 << 10

// newLimiter returns the limiter of one client: bps bytes per second, with a
// burst of a tenth of a second's worth or minBurst, whichever is larger.
//
// One limiter serves both directions and every flow of the client. Each
// byte the exit relays costs it the same, whichever way it goes: it comes
// in on one side and leaves on the other, so a client that uploads and one
// that downloads load the exit's line alike. One budget per client is then
// what bounds that client's share of the exit; per-direction limiters would
// let a client take twice the rate by using both directions.
func newLimiter(bps int64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(bps), int(max(minBurst, bps/10)))
}

// splice relays a TCP flow between a client's stream and a destination
// connection, with the client's rate limit on the destination side (so each
// byte is charged once, whichever way it goes) and the half-open bound on
// both.
func (e *Server) splice(st *yamux.Stream, conn net.Conn, c *client) relay.Result {
	h := &halfOpen{timeout: e.halfOpen(), c: &e.stats.limits}
	a := &flowConn{Conn: st, half: h}
	b := &flowConn{Conn: conn, half: h}
	h.a, h.b = a, b
	if c != nil {
		b.carried = &c.carried
	}
	if c != nil && c.limiter != nil {
		b.lim = c.limiter
		b.charged = &e.stats.limits.rateBytes
		b.ctx, b.cancel = context.WithCancel(context.Background())
	}
	var budget relay.Budget // a flow's moving buffers count against its client's cap
	if c != nil {
		budget = c.buffers
	}
	return e.stats.flows.Splice(a, b, budget)
}

// halfOpen bounds the life of a flow after one direction has ended: the
// other direction must carry something at least every timeout, or the flow
// is closed. relay.Splice keeps a half-closed flow open for as long as its
// peer wants, which a peer that never closes would make forever.
type halfOpen struct {
	timeout time.Duration
	c       *limitCounters
	a, b    *flowConn
	ended   atomic.Bool  // one direction has ended
	armed   atomic.Int64 // unix nanoseconds when the deadlines were last set
	expired atomic.Bool
}

// end notes that one direction has ended and starts the clock.
func (h *halfOpen) end() {
	if h.ended.CompareAndSwap(false, true) {
		h.extend(time.Now())
	}
}

// progress pushes the deadlines on after the remaining direction moved
// bytes. Deadlines are moved at most ten times per timeout, so a bulk
// transfer in a half-closed flow does not reset timers on every read.
func (h *halfOpen) progress() {
	if !h.ended.Load() {
		return
	}
	now := time.Now()
	if now.UnixNano()-h.armed.Load() >= int64(h.timeout/10) {
		h.extend(now)
	}
}

func (h *halfOpen) extend(now time.Time) {
	h.armed.Store(now.UnixNano())
	d := now.Add(h.timeout)
	h.a.Conn.SetDeadline(d)
	h.b.Conn.SetDeadline(d)
}

// failed counts the flow as expired when err is a deadline set by h.
func (h *halfOpen) failed(err error) {
	if h.ended.Load() && isTimeout(err) && h.expired.CompareAndSwap(false, true) {
		h.c.halfOpenExpired.Add(1)
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, yamux.ErrTimeout) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// flowConn is one side of a flow at the exit: it tells the flow's halfOpen
// about progress and half-close, and, when lim is set, charges every byte
// read or written to the client's limiter, waiting for tokens.
type flowConn struct {
	net.Conn
	half    *halfOpen
	lim     *rate.Limiter // nil: unlimited
	charged *atomic.Uint64
	carried *atomic.Uint64  // the client's bytes relayed; nil: not counted
	ctx     context.Context // ends waits for tokens when the conn closes
	cancel  context.CancelFunc
}

func (f *flowConn) Read(p []byte) (int, error) {
	if f.lim != nil && len(p) > f.lim.Burst() {
		p = p[:f.lim.Burst()]
	}
	n, err := f.Conn.Read(p)
	if n > 0 {
		if f.carried != nil {
			f.carried.Add(uint64(n))
		}
		if f.lim != nil {
			if werr := f.take(n); werr != nil && err == nil {
				err = werr
			}
		}
		// After the wait for the rate: a flow waiting for its share is
		// moving, and its deadline must not run out meanwhile.
		f.half.progress()
	}
	if err != nil {
		f.half.failed(err)
	}
	return n, err
}

func (f *flowConn) Write(p []byte) (int, error) {
	if f.lim == nil {
		n, err := f.Conn.Write(p)
		f.wrote(n, err)
		return n, err
	}
	var done int
	for done < len(p) {
		chunk := p[done:min(len(p), done+f.lim.Burst())]
		if err := f.take(len(chunk)); err != nil {
			return done, err
		}
		f.half.progress()
		n, err := f.Conn.Write(chunk)
		done += n
		f.wrote(n, err)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (f *flowConn) wrote(n int, err error) {
	if n > 0 {
		if f.carried != nil {
			f.carried.Add(uint64(n))
		}
		f.half.progress()
	}
	if err != nil {
		f.half.failed(err)
	}
}

// take charges n bytes to the limiter, waiting for them, or returns
// net.ErrClosed when the conn closes first. It takes what has accrued, a
// datagram's worth or more at a time, and never borrows ahead as
// rate.Limiter.WaitN would: the budget then never goes below zero, and
// datagrams of the same client, which are dropped rather than queued when
// the budget is short, share the rate with its busy TCP flows instead of
// finding it always spent.
func (f *flowConn) take(n int) error {
	for n > 0 {
		want := min(n, takeAtLeast)
		now := time.Now()
		avail := f.lim.TokensAt(now)
		if int(avail) >= want {
			if k := min(n, int(avail)); f.lim.AllowN(now, k) {
				f.charged.Add(uint64(k))
				n -= k
			}
			continue // taken, or another taker was first: look again
		}
		wait := time.Duration((float64(want) - avail) / float64(f.lim.Limit()) * float64(time.Second))
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-t.C:
		case <-f.ctx.Done():
			t.Stop()
			return net.ErrClosed
		}
	}
	return nil
}

// takeAtLeast is the least a rate-limited flow takes at once: about one
// full-size datagram, so that flows and datagrams take turns at a similar
// grain.
const takeAtLeast = 1500

// CloseWrite ends the direction towards this side. relay.Splice calls it
// when the other side's stream ended: the flow is now half-open.
func (f *flowConn) CloseWrite() error {
	f.half.end()
	if cw, ok := f.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Reset passes an aborted flow on to this side, for relay.Splice: a stream
// is reset, a TCP connection sends a reset when it closes.
func (f *flowConn) Reset() error { return relay.Reset(f.Conn) }

func (f *flowConn) Close() error {
	if f.cancel != nil {
		f.cancel()
	}
	return f.Conn.Close()
}
