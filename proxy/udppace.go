package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/udpbatch"
)

// pacer holds a batch for a client on this host until the client's socket
// has room for it. Datagrams from the far side arrive in bursts (several
// per frame, frames in bursts off the link), and a client that has not run
// for a few milliseconds drops whatever its receive buffer cannot hold: a
// uTP sender takes each such drop as congestion and halves its window.
// Held here instead, they wait in the link, where delay-based congestion
// control (uTP's LEDBAT) sees them as delay and slows down gently.
//
// The pacer reads the client socket's queue from the kernel (Linux's
// sock_diag); elsewhere, or for a client on another host, it does nothing.
// It must not be used concurrently.
type pacer struct {
	probe *udpbatch.QueueProbe
	port  uint16 // the relay socket's port: the source the client's socket sees
	off   bool
	timer *time.Timer
	// room is how many more bytes the client's socket surely holds: what
	// it had free when last looked at, less what was sent since (only the
	// relay sends to it). While a batch fits in it, no look is needed.
	room int
	dst  netip.AddrPort // the socket room is for
}

const (
	// paceOverhead is, about, what the kernel charges a socket per
	// datagram beyond its payload (the buffer's bookkeeping and rounding).
	paceOverhead = 1024
	// paceMax bounds how long one batch is held: past it, the batch goes,
	// and what does not fit is dropped as it would have been.
	paceMax = 50 * time.Millisecond
	// paceStep is how long the pacer waits between looks at the queue.
	paceStep = 200 * time.Microsecond
)

// wait returns once the client's socket (ms[0]'s destination) has room
// for all of ms, or after paceMax, or when ctx ends. It returns at once for
// a destination that is not on this host, or a socket it cannot find.
func (p *pacer) wait(ctx context.Context, pc *net.UDPConn, ms []udpbatch.Message) {
	if p.off || len(ms) == 0 {
		return
	}
	dst := ms[0].Addr
	need := 0
	for _, m := range ms {
		need += len(m.Buf) + paceOverhead
	}
	deadline := time.Now().Add(paceMax)
	for !p.take(ctx, pc, dst, need) {
		if time.Now().After(deadline) {
			p.dst, p.room = netip.AddrPort{}, 0
			return
		}
		if p.timer == nil {
			p.timer = time.NewTimer(paceStep)
		} else {
			p.timer.Reset(paceStep)
		}
		select {
		case <-ctx.Done():
			p.timer.Stop()
			return
		case <-p.timer.C:
		}
	}
}

// take reports whether dst's socket has room for need more bytes now, and
// if so counts them as sent. It looks at the socket's queue at most once,
// and never waits. Where pacing does not apply (a destination on another
// host, a socket it cannot find, ctx ended) it reports true.
func (p *pacer) take(ctx context.Context, pc *net.UDPConn, dst netip.AddrPort, need int) bool {
	if p.off || ctx.Err() != nil {
		return true
	}
	if dst == p.dst && need <= p.room {
		p.room -= need
		return true
	}
	if !dst.Addr().IsLoopback() {
		return true
	}
	if p.probe == nil {
		local, _ := pc.LocalAddr().(*net.UDPAddr)
		pr, err := udpbatch.NewQueueProbe()
		if err != nil || local == nil {
			if pr != nil {
				pr.Close()
			}
			p.off = true
			return true
		}
		p.probe, p.port = pr, local.AddrPort().Port()
	}
	queued, limit, err := p.probe.Queue(netip.AddrPortFrom(dst.Addr(), p.port), dst)
	if err != nil {
		// No such socket (yet): send as before. Any other error (a
		// kernel without UDP socket diagnostics, a lost reply) would
		// come back on every batch: the pacer stays off.
		p.dst, p.room = netip.AddrPort{}, 0
		p.off = !errors.Is(err, udpbatch.ErrNoSocket)
		return true
	}
	if queued+need <= limit || queued == 0 {
		p.dst, p.room = dst, max(limit-queued-need, 0)
		return true
	}
	return false
}

// close releases the pacer's probe.
func (p *pacer) close() {
	if p.probe != nil {
		p.probe.Close()
	}
	if p.timer != nil {
		p.timer.Stop()
	}
}
