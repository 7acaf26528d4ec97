package testnet

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"time"
)

// UDPClient is an application's side of a SOCKS5 UDP association: the TCP
// control connection and a UDP socket that speaks to the proxy's relay.
type UDPClient struct {
	Control net.Conn
	Relay   netip.AddrPort // the proxy's relay socket
	Conn    *net.UDPConn
}

// SOCKS5Associate asks the proxy at proxyAddr for a UDP association for
// 0.0.0.0:0, as libtorrent does.
func SOCKS5Associate(ctx context.Context, proxyAddr string) (*UDPClient, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	relay, err := socks5Handshake(c, 3, "0.0.0.0:0")
	if err != nil {
		c.Close()
		return nil, err
	}
	if relay.Addr().IsUnspecified() {
		relay = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), relay.Port())
	}
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		c.Close()
		return nil, err
	}
	return &UDPClient{Control: c, Relay: relay, Conn: u}, nil
}

// Send sends payload to dst ("ip:port" or "name:port") through the proxy.
func (u *UDPClient) Send(dst string, payload []byte) error {
	host, portStr, err := net.SplitHostPort(dst)
	if err != nil {
		return err
	}
	port, err := netip.ParseAddrPort("0.0.0.0:" + portStr)
	if err != nil {
		return err
	}
	b := []byte{0, 0, 0}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			b = append(b, 1)
		} else {
			b = append(b, 4)
		}
		b = append(b, ip.AsSlice()...)
	} else {
		b = append(b, 3, byte(len(host)))
		b = append(b, host...)
	}
	b = binary.BigEndian.AppendUint16(b, port.Port())
	b = append(b, payload...)
	_, err = u.Conn.WriteToUDPAddrPort(b, u.Relay)
	return err
}

// Receive waits up to timeout for a datagram from the relay and returns its
// payload and the source address in its header.
func (u *UDPClient) Receive(timeout time.Duration) ([]byte, netip.AddrPort, error) {
	buf := make([]byte, 65536)
	u.Conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		n, from, err := u.Conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		if from != u.Relay || n < 10 {
			continue
		}
		b := buf[:n]
		var ip netip.Addr
		switch b[3] {
		case 1:
			ip, b = netip.AddrFrom4([4]byte(b[4:8])), b[8:]
		case 4:
			if len(b) < 22 {
				continue
			}
			ip, b = netip.AddrFrom16([16]byte(b[4:20])), b[20:]
		default:
			return nil, netip.AddrPort{}, errors.New("reply with a domain address")
		}
		return b[2:], netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b)), nil
	}
}

// Close ends the association by closing the control connection.
func (u *UDPClient) Close() {
	u.Control.Close()
	u.Conn.Close()
}
