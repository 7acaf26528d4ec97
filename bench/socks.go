package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/socks"
)

// SOCKS5 is a SOCKS5 proxy (RFC 1928) reached at Addr, with RFC 1929
// username/password authentication when User is set. Its Dial speaks the
// protocol one step at a time (greeting, then request), as curl does, so
// that proxies which drop a pipelined request work too.
type SOCKS5 = socks.Client

// Probe checks that a SOCKS5 proxy answers at s.Addr and accepts the
// credentials given, without opening a flow. Its errors say what is wrong
// and how to fix it.
func Probe(ctx context.Context, s SOCKS5) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Addr)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("nothing accepts connections there (connection refused): start the SOCKS5 proxy (for ssh: ssh -N -D ADDR HOST), or fix the address")
	case ctx.Err() != nil:
		return errors.New("no answer within 5s: check the address, and that no firewall drops it")
	case err != nil:
		return fmt.Errorf("cannot connect (%v): check the address", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	err = s.Greet(c)
	switch {
	case errors.Is(err, socks.ErrNoMethod) && s.User == "":
		return errors.New("the proxy wants authentication: give it as USER:PASS@HOST:PORT")
	case err != nil:
		return fmt.Errorf("it does not answer as a SOCKS5 proxy (%v): check the address and port", err)
	}
	return nil
}

// packetPath carries datagrams to the UDP echo target and back: directly or
// through a SOCKS5 UDP association. Send is called from one goroutine and
// Recv from another.
type packetPath interface {
	Send(payload []byte) error
	// Recv returns the payload of the next datagram, in buf.
	Recv(buf []byte) ([]byte, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// directUDP is a connected UDP socket to the target.
type directUDP struct{ *net.UDPConn }

func dialUDP(target string) (packetPath, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return nil, fmt.Errorf("UDP target %q: %w", target, err)
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, err
	}
	c.SetReadBuffer(udpBufferSize)
	c.SetWriteBuffer(udpBufferSize)
	return directUDP{c}, nil
}

func (d directUDP) Send(p []byte) error { _, err := d.Write(p); return err }

func (d directUDP) Recv(buf []byte) ([]byte, error) {
	n, err := d.Read(buf)
	return buf[:n], err
}

// socksUDP is one SOCKS5 UDP association whose datagrams all go to target.
type socksUDP struct {
	*socks.Association
	target string
}

// associate opens a UDP association through s whose datagrams go to target
// (an IP and port). A proxy without UDP ASSOCIATE gives a
// *socks.ReplyError with Code 7.
func associate(ctx context.Context, s SOCKS5, target string) (packetPath, error) {
	if _, err := socks.AppendAddr(nil, target); err != nil {
		return nil, err
	}
	a, err := s.Associate(ctx)
	if err != nil {
		return nil, err
	}
	a.Conn.SetReadBuffer(udpBufferSize)
	a.Conn.SetWriteBuffer(udpBufferSize)
	return socksUDP{a, target}, nil
}

func (u socksUDP) Send(p []byte) error { return u.Association.Send(u.target, p) }

func (u socksUDP) Recv(buf []byte) ([]byte, error) {
	p, _, err := u.Receive(buf)
	return p, err
}

func (u socksUDP) SetReadDeadline(t time.Time) error { return u.Conn.SetReadDeadline(t) }
