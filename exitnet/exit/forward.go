package exit

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
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
// client's first UDP association is bound to it. The stream carries lease
// messages meanwhile (see leased).
func (e *Server) forward(ctx context.Context, log *slog.Logger, sess *link.Session, st *yamux.Stream, c *client, want uint16) {
	if e.cfg.Ports == nil {
		wire.Respond(st, wire.Response{Status: wire.StatusKindNotSupported})
		st.Close()
		return
	}
	var ln *net.TCPListener
	from := wire.AddrFromNet(sess.Conn.RemoteAddr()).IP
	want = e.lentUnder(sess.Peer, want)
	port, err := e.cfg.Ports.Acquire(sess.Peer, from, want, func(p uint16) error {
		if e.dhtOnPort(p) {
			return errDHTPort
		}
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
	told := e.mapForward(ctx, sess.Peer, port) // the port the internet reaches it at
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

	// Probes and inbound connections end with the forward.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := &leased{e: e, ctx: ctx, log: log, sess: sess, c: c, port: port, st: st,
		tcpProbes: make(map[netip.AddrPort]chan wire.Status)}
	l.mu.Lock()
	l.listen(ln)
	l.mu.Unlock()
	if e.cfg.NAT != nil {
		defer e.tellForward(port, told, l.tellPublic)()
	}
	// The forward lasts until the client closes its stream, the link goes,
	// or the exit shuts down.
	stop := context.AfterFunc(ctx, func() { st.Close() })
	l.serve()
	stop()
	cancel()
	l.mu.Lock()
	l.closed = true
	if l.ln == nil { // refusing TCP: no longer, the port is gone
		e.stats.fwd.tcpOff.Add(-1)
	}
	l.unlisten()
	l.mu.Unlock()
	st.Close()
	l.wg.Wait()
	log.Info("forward closed", "port", port)
}

// probeTimeout bounds a reachability probe; the client waits a little
// longer for its answer.
const probeTimeout = 8 * time.Second

// leased is one forwarded port while its forward stream is open: its TCP
// listener (closed while the client refuses inbound TCP), and the lease
// messages on the stream.
type leased struct {
	e    *Server
	ctx  context.Context
	log  *slog.Logger
	sess *link.Session
	c    *client
	port uint16
	st   *yamux.Stream
	wg   sync.WaitGroup // accept loops, inbound connections, probes

	wmu sync.Mutex // writes on st

	mu        sync.Mutex
	ln        *net.TCPListener // nil while TCP is refused
	closed    bool             // the forward is ending: no new listener, no new probe
	probing   bool
	waiting   []uint32 // probe IDs the running probe answers
	tcpProbes map[netip.AddrPort]chan wire.Status
}

// listen makes ln the port's listener and accepts on it. The caller holds
// mu.
func (l *leased) listen(ln *net.TCPListener) {
	l.ln = ln
	l.wg.Go(func() {
		for {
			conn, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			if !l.e.admitInbound(conn, l.c) {
				continue
			}
			l.e.stats.fwd.inbound.Add(1)
			l.wg.Go(func() {
				defer l.c.inbound.Add(-1)
				l.carryInbound(conn)
			})
		}
	})
}

// unlisten closes the listener, if any: SYNs to the port get a reset. The
// caller holds mu.
func (l *leased) unlisten() {
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
}

// serve reads lease messages until the stream ends.
func (l *leased) serve() {
	buf := make([]byte, wire.MaxLeaseMsg)
	for {
		typ, body, err := wire.ReadLeaseMsg(l.st, buf)
		if errors.Is(err, wire.ErrLeaseMsg) {
			l.log.Debug("forward: unreadable lease message; ignoring the rest", "err", err)
			io.Copy(io.Discard, l.st)
			return
		}
		if err != nil {
			return
		}
		switch typ {
		case wire.LeaseProbe:
			if req, err := wire.ParseProbeRequest(body); err == nil {
				l.startProbe(req.ID)
			}
		case wire.LeaseInboundTCP:
			if len(body) >= 1 {
				state := l.setTCP(body[0] != 0)
				l.send(wire.LeaseInboundTCP, []byte{byte(state)})
			}
		}
	}
}

// tellPublic tells the client the port peers now reach the forward at.
func (l *leased) tellPublic(public uint16) {
	l.send(wire.LeasePublicPort, wire.PublicPort{Port: public}.Body())
}

// send writes one lease message; a failure shows as the stream's end.
func (l *leased) send(typ byte, body []byte) {
	msg, err := wire.AppendLeaseMsg(nil, typ, body)
	if err != nil {
		return
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.st.SetWriteDeadline(time.Now().Add(10 * time.Second))
	l.st.Write(msg)
	l.st.SetWriteDeadline(time.Time{})
}

// setTCP opens or closes the port's TCP listener, as the client asks, and
// returns what the port does now.
func (l *leased) setTCP(on bool) wire.InboundTCPState {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return wire.InboundTCPClosed
	case !on:
		if l.ln != nil {
			l.unlisten()
			l.e.stats.fwd.tcpOff.Add(1)
			l.e.stats.fwd.tcpClosings.Add(1)
			l.log.Info("forward: refusing TCP, the client's target accepts none", "port", l.port)
		}
		return wire.InboundTCPClosed
	case l.ln != nil:
		return wire.InboundTCPListening
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{Port: int(l.port)})
	if err != nil {
		l.log.Warn("forward: cannot accept TCP on the port again", "port", l.port, "err", err)
		return wire.InboundTCPLost
	}
	l.e.stats.fwd.tcpOff.Add(-1)
	l.listen(ln)
	l.log.Info("forward: accepting TCP again", "port", l.port)
	return wire.InboundTCPListening
}

// carryInbound carries one connection from the forwarded port to the
// client.
func (l *leased) carryInbound(conn *net.TCPConn) {
	e := l.e
	defer e.stats.flows.Begin(wire.KindInbound)()
	remote := conn.RemoteAddr().(*net.TCPAddr).AddrPort()
	st, err := l.sess.OpenStream(l.ctx)
	if err != nil {
		conn.Close()
		return
	}
	dst := wire.Addr{IP: remote.Addr().Unmap(), Port: remote.Port()}
	resp, err := wire.Call(l.ctx, st, wire.Request{Kind: wire.KindInbound, Dst: dst}, 10*time.Second)
	status := resp.Status
	if err != nil {
		status = wire.StatusTimeout
	}
	l.tcpProbeDone(remote, status)
	if status != wire.StatusOK {
		e.stats.fwd.refused.Add(1)
		l.log.Debug("inbound refused by client", "dst", dst, "status", resp.Status, "err", err)
		conn.Close()
		st.Reset()
		return
	}
	start := time.Now()
	r := e.splice(st, conn, l.c)
	l.log.Debug("inbound done", "dst", dst, "bytes_in", r.BtoA, "bytes_out", r.AtoB, "dur", time.Since(start).Round(time.Millisecond))
}

// startProbe runs a probe for id, or adds id to the one running.
func (l *leased) startProbe(id uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.waiting = append(l.waiting, id)
	if l.probing {
		return
	}
	l.probing = true
	l.e.stats.fwd.probes.Add(1)
	l.wg.Go(func() {
		tcp, udp := l.probe()
		l.mu.Lock()
		ids := l.waiting
		l.waiting, l.probing = nil, false
		l.mu.Unlock()
		for _, id := range ids {
			l.send(wire.LeaseProbe, wire.ProbeResult{ID: id, TCP: tcp, UDP: udp}.Body())
		}
		l.log.Debug("forward: probed", "port", l.port, "tcp", tcp, "udp", udp)
	})
}

// probe connects to the port as a peer would, from the exit's loopback
// address: outside the client's link, through the port's listener and its
// UDP association.
func (l *leased) probe() (wire.ProbeTCP, wire.ProbeUDP) {
	ctx, cancel := context.WithTimeout(l.ctx, probeTimeout)
	defer cancel()
	var tcp wire.ProbeTCP
	var wg sync.WaitGroup
	wg.Go(func() { tcp = l.probeTCP(ctx) })
	udp := l.probeUDP(ctx)
	wg.Wait()
	return tcp, udp
}

var loopback4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})

func (l *leased) probeTCP(ctx context.Context) wire.ProbeTCP {
	l.mu.Lock()
	listening := l.ln != nil
	l.mu.Unlock()
	if !listening {
		return wire.ProbeTCPClosed
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(loopback4, l.port).String())
	if errors.Is(err, syscall.ECONNREFUSED) {
		return wire.ProbeTCPClosed
	}
	if err != nil {
		return wire.ProbeTCPFailed
	}
	defer conn.Close()
	ch := l.tcpProbe(conn.LocalAddr().(*net.TCPAddr).AddrPort())
	defer func() {
		l.mu.Lock()
		delete(l.tcpProbes, conn.LocalAddr().(*net.TCPAddr).AddrPort())
		l.mu.Unlock()
	}()
	select {
	case status := <-ch:
		if status == wire.StatusOK {
			return wire.ProbeTCPAccepted
		}
		if status == wire.StatusConnectionRefused {
			return wire.ProbeTCPRefused
		}
		return wire.ProbeTCPFailed
	case <-ctx.Done():
		return wire.ProbeTCPFailed
	}
}

// tcpProbe returns the channel that carries the client's answer for the
// probe connection from local, made by whichever side asks first.
func (l *leased) tcpProbe(local netip.AddrPort) chan wire.Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.tcpProbes[local]
	if !ok {
		ch = make(chan wire.Status, 1)
		l.tcpProbes[local] = ch
	}
	return ch
}

// tcpProbeDone passes the client's answer for an inbound connection from
// remote to the probe that made it, if a probe did.
func (l *leased) tcpProbeDone(remote netip.AddrPort, status wire.Status) {
	if remote.Addr().Unmap() != loopback4 {
		return
	}
	l.mu.Lock()
	probing := l.probing
	l.mu.Unlock()
	if !probing {
		return
	}
	select {
	case l.tcpProbe(netip.AddrPortFrom(loopback4, remote.Port())) <- status:
	default:
	}
}

// utpSYN is a uTP (BEP 29) connection request: type 4, version 1, and a
// connection ID; a torrent client that takes uTP on the port acknowledges
// it.
func utpSYN(connID uint16) []byte {
	p := make([]byte, 20)
	p[0] = 4<<4 | 1
	p[2], p[3] = byte(connID>>8), byte(connID)
	ts := uint32(time.Now().UnixMicro())
	p[4], p[5], p[6], p[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
	p[12], p[13] = 0x10, 0 // window: 1 MiB
	p[16], p[17] = 0, 1    // seq_nr
	return p
}

func (l *leased) probeUDP(ctx context.Context) wire.ProbeUDP {
	if !l.c.udpOnForward.Load() || l.c.forward.Load() != uint32(l.port) {
		return wire.ProbeUDPNoAssociation
	}
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback4, 0)))
	if err != nil {
		return wire.ProbeUDPFailed
	}
	defer pc.Close()
	me := uint32(pc.LocalAddr().(*net.UDPAddr).Port)
	l.c.udpProbe.Store(me) // the answer may come back to this socket
	defer l.c.udpProbe.CompareAndSwap(me, 0)
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Now()) })
	defer stop()
	to := netip.AddrPortFrom(loopback4, l.port)
	if _, err := pc.WriteToUDPAddrPort(utpSYN(uint16(time.Now().UnixNano())), to); err != nil {
		return wire.ProbeUDPFailed
	}
	buf := make([]byte, 2048)
	for {
		_, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return wire.ProbeUDPSilent
		}
		if from.Port() == l.port {
			return wire.ProbeUDPAnswered
		}
	}
}

// probeDestination lets a client's datagram to a probe's socket through,
// whatever the policy says of loopback: the answer to the exit's own probe.
func (c *client) probeDestination(dst wire.Addr) (netip.Addr, bool) {
	p := c.udpProbe.Load()
	if p == 0 || uint32(dst.Port) != p || dst.IP.Unmap() != loopback4 {
		return netip.Addr{}, false
	}
	return loopback4, true
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
