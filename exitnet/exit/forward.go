package exit

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// PortLender lends clients ports for inbound forwarding. portfwd.Leases is
// one.
type PortLender interface {
	// Acquire lends peer, whose link comes from the address from, a port,
	// preferring want, and binds it with try. A refusal says why by the
	// status it carries (wire.StatusOf): wire.StatusForwardCap,
	// wire.StatusPortsExhausted, wire.StatusForwardRateLimit or
	// wire.StatusNotAllowed.
	Acquire(peer link.PeerID, from netip.Addr, want uint16, try func(port uint16) error) (uint16, error)
	// Release ends peer's use of port; it may stay reserved for peer.
	// carried is what the client relayed through the exit, in bytes both
	// ways, while it held the port.
	Release(peer link.PeerID, port uint16, carried uint64)
	// Free counts the ports that could be lent to a new client now.
	Free() int
	// Range returns the ports it lends, inclusive.
	Range() (lo, hi uint16)
}

// forwardStatus is the status a forward refusal is answered with: the
// lender's reason, or "exhausted" when it gives none the wire knows.
func forwardStatus(err error) wire.Status {
	switch s := wire.StatusOf(err); s {
	case wire.StatusNotAllowed, wire.StatusForwardCap, wire.StatusPortsExhausted, wire.StatusForwardRateLimit:
		return s
	}
	return wire.StatusPortsExhausted
}

// forward lends the client a port for as long as it keeps st open: TCP
// connections to the port become inbound streams to the client, and the
// client's first UDP association is bound to it.
func (e *Server) forward(ctx context.Context, log *slog.Logger, sess *link.Session, st *yamux.Stream, c *client, want uint16) {
	if e.cfg.Ports == nil {
		wire.Respond(st, wire.Response{Status: wire.StatusKindNotSupported})
		st.Close()
		return
	}
	var ln *net.TCPListener
	from := wire.AddrFromNet(sess.Conn.RemoteAddr()).IP
	port, err := e.cfg.Ports.Acquire(sess.Peer, from, want, func(p uint16) error {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{Port: int(p)})
		ln = l
		return err
	})
	if err != nil {
		status := forwardStatus(err)
		e.stats.fwd.countRefusal(status)
		log.Info("forward refused", "err", err)
		wire.Respond(st, wire.Response{Status: status})
		st.Close()
		return
	}
	carried := c.carried.Load()
	defer func() { e.cfg.Ports.Release(sess.Peer, port, c.carried.Load()-carried) }()
	told := e.mapForward(ctx, port) // the port the internet reaches it at
	defer e.unmapForward(port)
	c.forward.Store(uint32(port))
	defer c.forward.CompareAndSwap(uint32(port), 0)
	// Counted before the client hears of it, so that what the client sees
	// is already in the exit's figures.
	e.stats.fwd.active.Add(1)
	defer e.stats.fwd.active.Add(-1)
	if err := wire.Respond(st, wire.Response{Status: wire.StatusOK, Bound: wire.Addr{Port: told}}); err != nil {
		ln.Close()
		st.Reset()
		return
	}
	log.Info("forward open", "port", port, "external", told)

	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			if !e.admitInbound(conn, c) {
				continue
			}
			e.stats.fwd.inbound.Add(1)
			wg.Go(func() {
				defer c.inbound.Add(-1)
				e.carryInbound(ctx, log, sess, conn, c)
			})
		}
	})
	// The forward lasts until the client closes its stream, the link goes,
	// or the exit shuts down.
	stop := context.AfterFunc(ctx, func() { st.Close() })
	io.Copy(io.Discard, st)
	stop()
	ln.Close()
	st.Close()
	wg.Wait()
	log.Info("forward closed", "port", port)
}

// carryInbound carries one connection from a forwarded port to the client.
func (e *Server) carryInbound(ctx context.Context, log *slog.Logger, sess *link.Session, conn *net.TCPConn, c *client) {
	defer e.stats.flows.Begin(wire.KindInbound)()
	remote := conn.RemoteAddr().(*net.TCPAddr).AddrPort()
	st, err := sess.OpenStream(ctx)
	if err != nil {
		conn.Close()
		return
	}
	dst := wire.Addr{IP: remote.Addr().Unmap(), Port: remote.Port()}
	resp, err := wire.Call(ctx, st, wire.Request{Kind: wire.KindInbound, Dst: dst}, 10*time.Second)
	if err != nil || resp.Status != wire.StatusOK {
		e.stats.fwd.refused.Add(1)
		log.Debug("inbound refused by client", "dst", dst, "status", resp.Status, "err", err)
		conn.Close()
		st.Reset()
		return
	}
	start := time.Now()
	r := e.splice(st, conn, c)
	log.Debug("inbound done", "dst", dst, "bytes_in", r.BtoA, "bytes_out", r.AtoB, "dur", time.Since(start).Round(time.Millisecond))
}

// listenUDP opens an association's socket: on the client's forwarded port
// for its first association while it has one, so that peers reach the
// client at exit-address:forwarded-port, and on an ephemeral port otherwise.
func (c *client) listenUDP() (conn *net.UDPConn, release func(), err error) {
	if p := c.forward.Load(); p != 0 && c.udpOnForward.CompareAndSwap(false, true) {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: int(p)})
		if err == nil {
			return conn, func() { c.udpOnForward.Store(false) }, nil
		}
		c.udpOnForward.Store(false)
		// Another program holds the UDP side of the port: fall back to an
		// ephemeral one rather than fail the association.
		_ = err
	}
	conn, err = net.ListenUDP("udp", nil)
	return conn, func() {}, err
}
