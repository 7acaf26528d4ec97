package proxy

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Every datagram between a SOCKS5 client and its UDP relay starts with a
// header (RFC 1928 §7):
//
//	RSV (2) | FRAG (1) | ATYP (1) | DST.ADDR | DST.PORT (2) | DATA
//
// From the client the address is the destination (an IP, or a name the far
// side resolves); towards the client it is the source, always an IP.

// Address types, as in SOCKS5.
const (
	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4
)

// maxUDPHeaderLen is the longest header: RSV, FRAG, ATYP, a 255-byte name
// with its length byte, and a port.
const maxUDPHeaderLen = 2 + 1 + 1 + 1 + 255 + 2

// maxIPUDPHeaderLen is the longest header with an IP address: the one the
// relay puts in front of every datagram it sends to the client.
const maxIPUDPHeaderLen = 2 + 1 + 1 + 16 + 2

// Reasons to drop a client's datagram. errUDPFrag is counted apart from the
// others, which all mean a malformed header.
var (
	errUDPFrag     = errors.New("socks5 udp: fragmented datagram")
	errUDPShort    = errors.New("socks5 udp: truncated header")
	errUDPAddrType = errors.New("socks5 udp: unsupported address type")
	errUDPName     = errors.New("socks5 udp: invalid domain name")
	errUDPNoAddr   = errors.New("socks5 udp: no address")
)

// parseUDPHeader splits a client's datagram into its destination and its
// data, which aliases b. RSV is ignored. It allocates only for a domain name.
func parseUDPHeader(b []byte) (dst wire.Addr, data []byte, err error) {
	if len(b) < 4 {
		return wire.Addr{}, nil, errUDPShort
	}
	if b[2] != 0 {
		return wire.Addr{}, nil, errUDPFrag
	}
	rest := b[4:]
	switch b[3] {
	case atypIPv4:
		if len(rest) < 4+2 {
			return wire.Addr{}, nil, errUDPShort
		}
		dst.IP = netip.AddrFrom4([4]byte(rest[:4]))
		rest = rest[4:]
	case atypIPv6:
		if len(rest) < 16+2 {
			return wire.Addr{}, nil, errUDPShort
		}
		dst.IP = netip.AddrFrom16([16]byte(rest[:16]))
		rest = rest[16:]
	case atypDomain:
		if len(rest) < 1 || len(rest) < 1+int(rest[0])+2 {
			return wire.Addr{}, nil, errUDPShort
		}
		name := rest[1 : 1+int(rest[0])]
		if !wire.ValidName(name) {
			return wire.Addr{}, nil, errUDPName
		}
		dst.Name = string(name)
		rest = rest[1+len(name):]
	default:
		return wire.Addr{}, nil, errUDPAddrType
	}
	dst.Port = binary.BigEndian.Uint16(rest)
	return dst, rest[2:], nil
}

// udpHeaderLen is the length of the header appendUDPHeader writes for a, or
// 0 when it writes none.
func udpHeaderLen(a wire.Addr) int {
	switch {
	case a.IP.Is4() || a.IP.Is4In6():
		return 2 + 1 + 1 + 4 + 2
	case a.IP.Is6():
		return 2 + 1 + 1 + 16 + 2
	case a.Name != "" && wire.ValidName(a.Name):
		return 2 + 1 + 1 + 1 + len(a.Name) + 2
	}
	return 0
}

// appendUDPHeader appends the header for a, with FRAG 0: ATYP 1 for an IPv4
// address, including an IPv4-mapped IPv6 one, 4 for IPv6, 3 for a name. It
// does not allocate when b has room for the header.
func appendUDPHeader(b []byte, a wire.Addr) ([]byte, error) {
	switch {
	case a.IP.Is4() || a.IP.Is4In6():
		v := a.IP.Unmap().As4()
		b = append(b, 0, 0, 0, atypIPv4)
		b = append(b, v[:]...)
	case a.IP.Is6():
		v := a.IP.As16()
		b = append(b, 0, 0, 0, atypIPv6)
		b = append(b, v[:]...)
	case a.Name != "":
		if !wire.ValidName(a.Name) {
			return b, errUDPName
		}
		b = append(b, 0, 0, 0, atypDomain, byte(len(a.Name)))
		b = append(b, a.Name...)
	default:
		return b, errUDPNoAddr
	}
	return binary.BigEndian.AppendUint16(b, a.Port), nil
}
