package client

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/wire"
	"github.com/swarmvpn/swarmvpn/portfwd/announce"
	"github.com/swarmvpn/swarmvpn/proxy"
)

// The announced port is fixed in flight: the pool's flows and UDP
// associations are wrapped so that what a torrent client tells its
// trackers carries the forwarded port (a proxied libtorrent older than
// 2.0.10 says port 1) and none of the user's own addresses. Only flows
// whose first bytes can start an HTTP GET are looked at further; the rest
// pass with one comparison.

// announceDialer is the proxies' Dialer: the pool's, with each flow's
// outgoing requests rewritten where they are tracker announces.
type announceDialer struct {
	pl  *pool.Pool
	opt *announce.Options
}

var _ proxy.Dialer = announceDialer{}

func (d announceDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := d.pl.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if d.opt.Port() == 0 {
		return conn, nil // nothing to rewrite to: no cost at all
	}
	ac := &announceConn{Conn: conn}
	ac.w = announce.HTTPWriter{W: conn, Opt: d.opt}
	return ac, nil
}

// announceConn is a flow whose writes go through an HTTPWriter. It keeps
// the half-close and reset its flow has, which the relay relies on.
type announceConn struct {
	net.Conn
	w announce.HTTPWriter
}

func (c *announceConn) Write(p []byte) (int, error) { return c.w.Write(p) }

func (c *announceConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *announceConn) Reset() error {
	switch r := c.Conn.(type) {
	case interface{ Reset() error }:
		return r.Reset()
	case interface{ SetLinger(int) error }:
		return r.SetLinger(0)
	}
	return errors.ErrUnsupported
}

// associator lets the SOCKS5 server open UDP associations through the
// pool; each one rewrites the UDP tracker announces it carries, and the one
// that holds the forwarded port names the local target for datagrams that
// arrive before the torrent client has sent any.
type associator struct{ c *Client }

var _ proxy.Associator = associator{}

func (a associator) Associate(ctx context.Context) (proxy.Association, error) {
	u, err := a.c.pool.Associate(ctx)
	if err != nil {
		return nil, err // never a non-nil interface holding a nil pointer
	}
	as := &association{UDP: u, c: a.c}
	if a.c.announceOpt != nil {
		as.trackers = &announce.UDPTrackers{Opt: a.c.announceOpt}
	}
	return as, nil
}

type association struct {
	*pool.UDP
	c        *Client
	trackers *announce.UDPTrackers // nil: no rewriting
}

var (
	_ proxy.Association = (*association)(nil)
	_ proxy.Targeted    = (*association)(nil)
	_ proxy.Receiver    = trackerReceiver{}
)

func (a *association) WriteTo(p []byte, dst wire.Addr) error {
	return a.UDP.WriteTo(a.outgoing(p, dst), dst)
}

// Queue is WriteTo for a batch (pool.UDP.Queue): it must rewrite what it
// queues just the same.
func (a *association) Queue(p []byte, dst wire.Addr) bool {
	return a.UDP.Queue(a.outgoing(p, dst), dst)
}

// outgoing is datagram p to dst with a tracker announce's port rewritten.
func (a *association) outgoing(p []byte, dst wire.Addr) []byte {
	if a.trackers == nil {
		return p
	}
	d := announce.Dest{Host: dst.Name, Port: dst.Port}
	if dst.IP.IsValid() {
		d.Host = dst.IP.String()
	}
	return a.trackers.Outgoing(p, d, nil)
}

func (a *association) ReadFrom(p []byte) (int, wire.Addr, error) {
	n, src, err := a.UDP.ReadFrom(p)
	if err == nil && a.trackers != nil {
		a.trackers.Incoming(p[:n], netip.AddrPortFrom(src.IP, src.Port))
	}
	return n, src, err
}

// Receive is UDP.Receive with the answers to tracker connect requests
// looked at, as ReadFrom does.
func (a *association) Receive(r proxy.Receiver) error {
	if a.trackers == nil {
		return a.UDP.Receive(r)
	}
	return a.UDP.Receive(trackerReceiver{r, a.trackers})
}

type trackerReceiver struct {
	proxy.Receiver
	trackers *announce.UDPTrackers
}

func (t trackerReceiver) Datagram(p []byte, src wire.Addr) {
	t.trackers.Incoming(p, netip.AddrPortFrom(src.IP, src.Port))
	t.Receiver.Datagram(p, src)
}

// Target is the forward target while this association holds the
// forwarded port at the exit.
func (a *association) Target() netip.AddrPort {
	fwd := a.c.pool.Status().ForwardedPort
	if fwd == 0 || a.UDP.Port != fwd {
		return netip.AddrPort{}
	}
	return a.c.target(fwd)
}

// ownAddrs tells whether an address is the user's own: any address of this
// machine's interfaces, and any that is not global unicast (private,
// loopback, link-local, unique local), which can only name the user's own
// network. Interface addresses are read at most every ownAddrsEvery.
type ownAddrs struct {
	mu    sync.Mutex
	read  time.Time
	addrs map[netip.Addr]bool
}

const ownAddrsEvery = 30 * time.Second

func (o *ownAddrs) own(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if time.Since(o.read) > ownAddrsEvery {
		o.read = time.Now()
		o.addrs = map[netip.Addr]bool{}
		if ifaddrs, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range ifaddrs {
				if p, err := netip.ParsePrefix(ia.String()); err == nil {
					o.addrs[p.Addr().Unmap()] = true
				}
			}
		}
	}
	return o.addrs[a]
}
