package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// An address travels as SOCKS5 writes it (RFC 1928 §4), in stream headers,
// datagram frames and the SOCKS5 UDP header alike:
//
//	ATYP (1) | ADDR (4, 16, or 1 + a name of 1 to 255 bytes) | PORT (2)

// ErrShort reports bytes that end before the address they begin does.
var ErrShort = errors.New("truncated address")

// AppendAddr appends a as ATYP, address and port. An IPv4-mapped IPv6
// address stays IPv6; the unspecified address (no IP, no name) is sent as
// 0.0.0.0, "any", as in a UDP ASSOCIATE for 0.0.0.0:0. A name that
// ValidName refuses is an error.
func AppendAddr(b []byte, a Addr) ([]byte, error) {
	switch {
	case a.IP.Is4():
		b = append(b, atypIPv4)
		v := a.IP.As4()
		b = append(b, v[:]...)
	case a.IP.Is6():
		b = append(b, atypIPv6)
		v := a.IP.As16()
		b = append(b, v[:]...)
	case a.Name != "":
		if !ValidName(a.Name) {
			return b, fmt.Errorf("%w: %q", ErrName, a.Name)
		}
		b = append(b, atypDomain, byte(len(a.Name)))
		b = append(b, a.Name...)
	default:
		b = append(b, atypIPv4, 0, 0, 0, 0)
	}
	return binary.BigEndian.AppendUint16(b, a.Port), nil
}

// AddrLen is the length of what AppendAddr appends for a, or 0 for a name
// it refuses.
func AddrLen(a Addr) int {
	switch {
	case a.IP.Is6() && !a.IP.Is4():
		return 1 + 16 + 2
	case a.Name != "" && !a.IP.IsValid():
		if !ValidName(a.Name) {
			return 0
		}
		return 1 + 1 + len(a.Name) + 2
	}
	return 1 + 4 + 2
}

// CutAddr decodes the address at the start of b and returns it with the
// bytes after it, which alias b. Its errors are ErrShort, ErrAddrType and
// ErrName. It allocates only for a name.
func CutAddr(b []byte) (a Addr, rest []byte, err error) {
	if len(b) < 1 {
		return Addr{}, nil, ErrShort
	}
	switch b[0] {
	case atypIPv4:
		if len(b) < 1+4+2 {
			return Addr{}, nil, ErrShort
		}
		a.IP = netip.AddrFrom4([4]byte(b[1:5]))
		rest = b[5:]
	case atypIPv6:
		if len(b) < 1+16+2 {
			return Addr{}, nil, ErrShort
		}
		a.IP = netip.AddrFrom16([16]byte(b[1:17]))
		rest = b[17:]
	case atypDomain:
		if len(b) < 2 || len(b) < 2+int(b[1])+2 {
			return Addr{}, nil, ErrShort
		}
		name := b[2 : 2+int(b[1])]
		if !ValidName(name) {
			return Addr{}, nil, ErrName
		}
		a.Name = string(name)
		rest = b[2+len(name):]
	default:
		return Addr{}, nil, ErrAddrType
	}
	a.Port = binary.BigEndian.Uint16(rest)
	return a, rest[2:], nil
}
