package client

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// exitConn is a net.PacketConn over a UDP association at the exit: what
// the client's DHT node sends goes out from the exit's address, so DHT
// nodes see the exit, never this machine. Deadlines are not supported (the
// DHT node sets none); Close ends the association.
//
// When the association fails, ReadFrom does not return the error until
// Close: the DHT library panics on a read error from a socket it has not
// closed itself. The owner learns of the failure from dead, and closes.
type exitConn struct {
	udp        *pool.UDP
	sent, recv *atomic.Uint64
	dead       chan struct{} // closed when the association fails, or on Close
	closed     chan struct{} // closed by Close
	deadOnce   sync.Once
	closeOnce  sync.Once
}

var _ net.PacketConn = (*exitConn)(nil)

func newExitConn(udp *pool.UDP, sent, recv *atomic.Uint64) *exitConn {
	return &exitConn{udp: udp, sent: sent, recv: recv, dead: make(chan struct{}), closed: make(chan struct{})}
}

func (c *exitConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, src, err := c.udp.ReadFrom(b)
	if err != nil {
		c.markDead()
		<-c.closed
		return 0, nil, err
	}
	c.recv.Add(1)
	return n, net.UDPAddrFromAddrPort(netip.AddrPortFrom(src.IP.Unmap(), src.Port)), nil
}

func (c *exitConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("exit udp: not a UDP address")
	}
	ap := ua.AddrPort()
	if err := c.udp.WriteTo(b, wire.Addr{IP: ap.Addr().Unmap(), Port: ap.Port()}); err != nil {
		c.markDead()
		return 0, err
	}
	c.sent.Add(1)
	return len(b), nil
}

func (c *exitConn) markDead() { c.deadOnce.Do(func() { close(c.dead) }) }

func (c *exitConn) Close() error {
	c.closeOnce.Do(func() {
		c.markDead()
		close(c.closed)
		c.udp.Close()
	})
	return nil
}

// LocalAddr is the association's port at the exit (its address is the
// exit's, which this side does not know as an IP).
func (c *exitConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4zero, Port: int(c.udp.Port)}
}

func (c *exitConn) SetDeadline(time.Time) error      { return errors.ErrUnsupported }
func (c *exitConn) SetReadDeadline(time.Time) error  { return errors.ErrUnsupported }
func (c *exitConn) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }

// countingConn counts the datagrams of the client's own DHT socket.
type countingConn struct {
	net.PacketConn
	sent, recv *atomic.Uint64
}

func (c countingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.recv.Add(1)
	}
	return n, a, err
}

func (c countingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(b, addr)
	if err == nil {
		c.sent.Add(1)
	}
	return n, err
}
