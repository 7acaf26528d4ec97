package socks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Address types (ATYP).
const (
	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4
)

// AppendAddr appends target ("host:port") as a SOCKS5 address — ATYP,
// address, port — to b: an IP as such, anything else as a name.
func AppendAddr(b []byte, target string) ([]byte, error) {
	a, err := wire.ParseAddr(target)
	if err != nil {
		return b, fmt.Errorf("%q: %w", target, err)
	}
	return wire.AppendAddr(b, a)
}

// readAddr reads the address of type atyp, and the port, from r. For a
// name it returns the port with no IP: the client has no use for a name it
// did not ask about.
func readAddr(r io.Reader, atyp byte) (netip.AddrPort, error) {
	var b [16]byte
	var ip netip.Addr
	switch atyp {
	case atypIPv4:
		if _, err := io.ReadFull(r, b[:4]); err != nil {
			return netip.AddrPort{}, err
		}
		ip = netip.AddrFrom4([4]byte(b[:4]))
	case atypIPv6:
		if _, err := io.ReadFull(r, b[:16]); err != nil {
			return netip.AddrPort{}, err
		}
		ip = netip.AddrFrom16([16]byte(b[:16])).Unmap()
	case atypDomain:
		if _, err := io.ReadFull(r, b[:1]); err != nil {
			return netip.AddrPort{}, err
		}
		if _, err := io.CopyN(io.Discard, r, int64(b[0])); err != nil {
			return netip.AddrPort{}, err
		}
	default:
		return netip.AddrPort{}, fmt.Errorf("socks5 reply with address type %d", atyp)
	}
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[:2])), nil
}

// A datagram between the application and its relay (RFC 1928 §7):
//
//	RSV (2) | FRAG (1) | ATYP (1) | ADDR | PORT (2) | DATA
//
// To the relay the address is the destination; from the relay it is the
// source.

// Reasons ParseDatagram refuses a datagram.
var (
	ErrShortDatagram = errors.New("socks5 datagram: truncated header")
	ErrFragment      = errors.New("socks5 datagram: fragmented")
	ErrAddrType      = errors.New("socks5 datagram: unsupported address type")
)

// AppendDatagram appends the datagram that carries payload to dst
// ("host:port"), unfragmented, to b.
func AppendDatagram(b []byte, dst string, payload []byte) ([]byte, error) {
	start := len(b)
	b, err := AppendAddr(append(b, 0, 0, 0), dst)
	if err != nil {
		return b[:start], err
	}
	return append(b, payload...), nil
}

// ParseDatagram splits a datagram from the relay into its source and its
// payload, which aliases b. A source given as a name gives the zero
// AddrPort with no error.
func ParseDatagram(b []byte) (src netip.AddrPort, payload []byte, err error) {
	if len(b) < 4 {
		return netip.AddrPort{}, nil, ErrShortDatagram
	}
	if b[2] != 0 {
		return netip.AddrPort{}, nil, ErrFragment
	}
	a, payload, err := wire.CutAddr(b[3:])
	switch {
	case errors.Is(err, wire.ErrAddrType):
		return netip.AddrPort{}, nil, ErrAddrType
	case err != nil:
		return netip.AddrPort{}, nil, ErrShortDatagram
	case a.Name != "":
		return netip.AddrPort{}, payload, nil
	}
	return netip.AddrPortFrom(a.IP.Unmap(), a.Port), payload, nil
}
