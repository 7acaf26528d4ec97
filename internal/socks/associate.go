package socks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// Association is the application's side of a SOCKS5 UDP association: the
// control connection that keeps it alive, and a UDP socket that speaks to
// the proxy's relay. Send and Receive may run at once, each from one
// goroutine.
type Association struct {
	Control net.Conn       // closing it ends the association
	Relay   netip.AddrPort // the proxy's relay socket
	// Conn is bound to the address the control connection leaves from and
	// not connected: it takes datagrams from the relay only, as Receive
	// checks.
	Conn *net.UDPConn

	sendMu sync.Mutex
	out    []byte // Send's scratch buffer

	closeOnce sync.Once
	closeErr  error
}

// Associate asks the proxy for a UDP association. It asks for 0.0.0.0:0,
// as libtorrent does: the application's address is not known before its
// first datagram. A proxy without UDP ASSOCIATE gives a *ReplyError with
// Code 7, or an error that says it closed the connection.
func (c Client) Associate(ctx context.Context) (*Association, error) {
	control, relay, err := c.open(ctx, CmdUDPAssociate, "0.0.0.0:0")
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return nil, fmt.Errorf("the proxy closed the connection when asked for UDP ASSOCIATE (%w): it has no UDP support", err)
	}
	if err != nil {
		return nil, err
	}
	if !relay.Addr().IsValid() || relay.Addr().IsUnspecified() {
		// The relay is on the address the control connection reached.
		proxy := addrPortOf(control.RemoteAddr())
		relay = netip.AddrPortFrom(proxy.Addr(), relay.Port())
	}
	local := addrPortOf(control.LocalAddr())
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		control.Close()
		return nil, fmt.Errorf("UDP socket for the relay %s: %w", relay, err)
	}
	return &Association{Control: control, Relay: relay, Conn: conn}, nil
}

// addrPortOf returns a TCP address's IP (IPv4-mapped addresses unmapped)
// and port.
func addrPortOf(a net.Addr) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Send sends payload to dst ("host:port"; a host that is not an IP is sent
// as a name for the proxy to resolve) through the relay.
func (a *Association) Send(dst string, payload []byte) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	var err error
	if a.out, err = AppendDatagram(a.out[:0], dst, payload); err != nil {
		return err
	}
	_, err = a.Conn.WriteToUDPAddrPort(a.out, a.Relay)
	return err
}

// Receive reads the next datagram from the relay into buf and returns its
// payload, which aliases buf, and its source (the zero AddrPort when the
// relay names it). It passes over datagrams from anywhere else and those
// it cannot parse. A deadline is set on Conn.
func (a *Association) Receive(buf []byte) (payload []byte, src netip.AddrPort, err error) {
	for {
		n, from, err := a.Conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != a.Relay {
			continue
		}
		if src, payload, err := ParseDatagram(buf[:n]); err == nil {
			return payload, src, nil
		}
	}
}

// Close ends the association: it closes the control connection and the
// UDP socket. Calls after the first return the first one's result.
func (a *Association) Close() error {
	a.closeOnce.Do(func() { a.closeErr = errors.Join(a.Control.Close(), a.Conn.Close()) })
	return a.closeErr
}
