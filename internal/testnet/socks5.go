package testnet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// ReplyError is a SOCKS5 reply other than success.
type ReplyError struct{ Code byte }

func (e *ReplyError) Error() string { return "socks5 reply " + strconv.Itoa(int(e.Code)) }

// ReplyCode returns the SOCKS5 reply code in err, or -1 if err is not a
// ReplyError.
func ReplyCode(err error) int {
	if re, ok := errors.AsType[*ReplyError](err); ok {
		return int(re.Code)
	}
	return -1
}

// SOCKS5Dial opens a CONNECT flow to target ("host:port"; a host name is
// sent as a name) through the SOCKS5 proxy at proxyAddr, without
// authentication. It returns the conn and the bound address of the reply.
func SOCKS5Dial(ctx context.Context, proxyAddr, target string) (net.Conn, netip.AddrPort, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	bound, err := socks5Handshake(c, 1, target)
	if err != nil {
		c.Close()
		return nil, netip.AddrPort{}, err
	}
	c.SetDeadline(time.Time{})
	return c, bound, nil
}

// socks5Handshake sends greeting and request in one write, as libtorrent
// does, and reads both replies.
func socks5Handshake(c net.Conn, cmd byte, target string) (netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	req := []byte{5, 1, 0, 5, cmd, 0}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			req = append(req, 1)
		} else {
			req = append(req, 4)
		}
		req = append(req, ip.AsSlice()...)
	} else {
		req = append(req, 3, byte(len(host)))
		req = append(req, host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		return netip.AddrPort{}, err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:2]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("greeting reply: %w", err)
	}
	if hdr[0] != 5 || hdr[1] != 0 {
		return netip.AddrPort{}, fmt.Errorf("proxy refused no-auth: % x", hdr[:2])
	}
	if _, err := io.ReadFull(c, hdr[:4]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("request reply: %w", err)
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
		ip = netip.AddrFrom16(b)
	default:
		return netip.AddrPort{}, fmt.Errorf("reply address type %d", hdr[3])
	}
	var p [2]byte
	if _, err := io.ReadFull(c, p[:]); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(p[:])), nil
}
