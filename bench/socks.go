package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// SOCKS5 is a SOCKS5 proxy (RFC 1928) reached at Addr, with RFC 1929
// username/password authentication when User is set. Its Dial speaks the
// protocol one step at a time (greeting, then request), as curl does, so
// that proxies which drop a pipelined request work too.
type SOCKS5 struct {
	Addr       string
	User, Pass string
}

// ReplyError is a SOCKS5 reply other than success.
type ReplyError struct{ Code byte }

var replyText = map[byte]string{
	1: "general failure", 2: "not allowed by its rules", 3: "network unreachable",
	4: "host unreachable", 5: "connection refused", 6: "TTL expired",
	7: "command not supported", 8: "address type not supported",
}

func (e *ReplyError) Error() string {
	if t, ok := replyText[e.Code]; ok {
		return fmt.Sprintf("the proxy answered %q (SOCKS5 reply %d)", t, e.Code)
	}
	return fmt.Sprintf("the proxy answered SOCKS5 reply %d", e.Code)
}

// Dial opens a CONNECT flow to target (host:port) through the proxy. The
// handshake ends when ctx does; the flow then has no deadline.
func (s SOCKS5) Dial(ctx context.Context, target string) (net.Conn, error) {
	c, _, err := s.open(ctx, 1, target)
	return c, err
}

// open connects to the proxy and sends cmd for target, returning the
// control connection and the address in the proxy's reply.
func (s SOCKS5) open(ctx context.Context, cmd byte, target string) (net.Conn, netip.AddrPort, error) {
	req, err := socksAddr(target)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	bound, err := s.handshake(c, cmd, req)
	if !stop() || err != nil {
		c.Close()
		if err == nil || ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, netip.AddrPort{}, err
	}
	c.SetDeadline(time.Time{})
	return c, bound, nil
}

func (s SOCKS5) handshake(c net.Conn, cmd byte, addr []byte) (netip.AddrPort, error) {
	if err := s.greet(c); err != nil {
		return netip.AddrPort{}, err
	}
	req := append([]byte{5, cmd, 0}, addr...)
	if _, err := c.Write(req); err != nil {
		return netip.AddrPort{}, err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("socks5 reply: %w", err)
	}
	if hdr[1] != 0 {
		return netip.AddrPort{}, &ReplyError{Code: hdr[1]}
	}
	var ip netip.Addr
	switch hdr[3] {
	case 1:
		var b [4]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return netip.AddrPort{}, err
		}
		ip = netip.AddrFrom4(b)
	case 4:
		var b [16]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return netip.AddrPort{}, err
		}
		ip = netip.AddrFrom16(b).Unmap()
	case 3: // a name: skip it
		var n [1]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return netip.AddrPort{}, err
		}
		if _, err := io.CopyN(io.Discard, c, int64(n[0])); err != nil {
			return netip.AddrPort{}, err
		}
	default:
		return netip.AddrPort{}, fmt.Errorf("socks5 reply with address type %d", hdr[3])
	}
	var p [2]byte
	if _, err := io.ReadFull(c, p[:]); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(p[:])), nil
}

// errNoMethod is the proxy refusing every authentication method offered.
var errNoMethod = errors.New("the proxy accepts none of the authentication methods offered")

// greet sends the greeting and authenticates.
func (s SOCKS5) greet(c net.Conn) error {
	greeting := []byte{5, 1, 0}
	if s.User != "" {
		greeting = []byte{5, 2, 0, 2}
	}
	if _, err := c.Write(greeting); err != nil {
		return err
	}
	var r [2]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		return fmt.Errorf("socks5 greeting: %w", err)
	}
	if r[0] != 5 {
		return fmt.Errorf("not a SOCKS5 answer (% x)", r)
	}
	switch {
	case r[1] == 0:
		return nil
	case r[1] == 2 && s.User != "":
		auth := append([]byte{1, byte(len(s.User))}, s.User...)
		auth = append(append(auth, byte(len(s.Pass))), s.Pass...)
		if _, err := c.Write(auth); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, r[:]); err != nil {
			return fmt.Errorf("socks5 authentication: %w", err)
		}
		if r[1] != 0 {
			return errors.New("the proxy refused the user name and password")
		}
		return nil
	}
	return errNoMethod
}

// socksAddr encodes host:port as a SOCKS5 address: an IP as such, anything
// else as a name.
func socksAddr(target string) ([]byte, error) {
	host, portText, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q in %q", portText, target)
	}
	var b []byte
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			b = append([]byte{1}, ip.AsSlice()...)
		} else {
			b = append([]byte{4}, ip.AsSlice()...)
		}
	} else {
		if len(host) > 255 {
			return nil, fmt.Errorf("host name %q is longer than 255 bytes", host)
		}
		b = append([]byte{3, byte(len(host))}, host...)
	}
	return binary.BigEndian.AppendUint16(b, uint16(port)), nil
}

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
	err = s.greet(c)
	switch {
	case errors.Is(err, errNoMethod) && s.User == "":
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

// socksUDP is one SOCKS5 UDP association: the control connection that keeps
// it alive, and a UDP socket connected to the proxy's relay.
type socksUDP struct {
	control net.Conn
	conn    *net.UDPConn
	hdr     []byte // the header for datagrams to the target
	out     []byte // Send's scratch buffer
}

// Associate opens a UDP association whose datagrams go to target (an IP
// and port). A proxy without UDP ASSOCIATE gives a *ReplyError with Code 7.
func (s SOCKS5) associate(ctx context.Context, target string) (packetPath, error) {
	addr, err := socksAddr(target)
	if err != nil {
		return nil, err
	}
	// Ask for 0.0.0.0:0, as libtorrent does: the client's address is not
	// known before its first datagram.
	control, relay, err := s.open(ctx, 3, "0.0.0.0:0")
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return nil, fmt.Errorf("the proxy closed the connection when asked for UDP ASSOCIATE (%w): it has no UDP support", err)
	}
	if err != nil {
		return nil, err
	}
	if !relay.Addr().IsValid() || relay.Addr().IsUnspecified() {
		// The relay is on the address the control connection reached.
		proxyAP, _ := netip.ParseAddrPort(control.RemoteAddr().String())
		relay = netip.AddrPortFrom(proxyAP.Addr().Unmap(), relay.Port())
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		control.Close()
		return nil, fmt.Errorf("UDP socket to the relay %s: %w", relay, err)
	}
	conn.SetReadBuffer(udpBufferSize)
	conn.SetWriteBuffer(udpBufferSize)
	hdr := append([]byte{0, 0, 0}, addr...)
	return &socksUDP{control: control, conn: conn, hdr: hdr, out: make([]byte, 0, 65536)}, nil
}

func (u *socksUDP) Send(p []byte) error {
	u.out = append(append(u.out[:0], u.hdr...), p...)
	_, err := u.conn.Write(u.out)
	return err
}

func (u *socksUDP) Recv(buf []byte) ([]byte, error) {
	for {
		n, err := u.conn.Read(buf)
		if err != nil {
			return nil, err
		}
		b := buf[:n]
		if len(b) < 4 || b[2] != 0 { // fragments are not used here
			continue
		}
		var skip int
		switch b[3] {
		case 1:
			skip = 4 + 4 + 2
		case 4:
			skip = 4 + 16 + 2
		case 3:
			if len(b) < 5 {
				continue
			}
			skip = 4 + 1 + int(b[4]) + 2
		default:
			continue
		}
		if len(b) < skip {
			continue
		}
		return b[skip:], nil
	}
}

func (u *socksUDP) SetReadDeadline(t time.Time) error { return u.conn.SetReadDeadline(t) }

func (u *socksUDP) Close() error {
	u.control.Close()
	return u.conn.Close()
}
