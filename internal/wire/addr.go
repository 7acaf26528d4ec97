package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// An address travels as SOCKS5 writes it (RFC 1928 §4), in stream headers,
// datagram frames and the SOCKS5 UDP header alike:
//
//	ATYP (1) | ADDR (4, 16, or 1 + a name of 1 to 255 bytes) | PORT (2)

// Address types, numbered as in SOCKS5 (RFC 1928).
const (
	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4
)

// Addr is a destination: an IP address or an unresolved domain name, and a
// port. Exactly one of IP and Name is set.
type Addr struct {
	IP   netip.Addr
	Name string
	Port uint16
}

// ParseAddr parses "host:port". A host that is not an IP literal is kept as a
// name and never resolved here.
func ParseAddr(hostport string) (Addr, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return Addr{}, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return Addr{}, fmt.Errorf("invalid port %q", portStr)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return Addr{}, fmt.Errorf("address %q has a zone", host)
		}
		return Addr{IP: ip, Port: uint16(port)}, nil
	}
	if !ValidName(host) {
		return Addr{}, fmt.Errorf("%w: %q", ErrName, host)
	}
	return Addr{Name: host, Port: uint16(port)}, nil
}

// AddrFromNet converts a *net.TCPAddr or *net.UDPAddr; anything else gives
// the zero Addr.
func AddrFromNet(a net.Addr) Addr {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		return Addr{}
	}
	return Addr{IP: ap.Addr().Unmap(), Port: ap.Port()}
}

// String returns "host:port", suitable for net.Dial.
func (a Addr) String() string {
	host := a.Name
	if a.IP.IsValid() {
		host = a.IP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(a.Port)))
}

// readAddr reads ATYP, address and port from r, using buf (at least
// MaxHeaderLen bytes) as scratch space.
func readAddr(r io.Reader, buf []byte) (Addr, error) {
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return Addr{}, err
	}
	var a Addr
	switch buf[0] {
	case atypIPv4:
		if _, err := io.ReadFull(r, buf[:4+2]); err != nil {
			return Addr{}, err
		}
		a.IP = netip.AddrFrom4([4]byte(buf[:4]))
		a.Port = binary.BigEndian.Uint16(buf[4:])
	case atypIPv6:
		if _, err := io.ReadFull(r, buf[:16+2]); err != nil {
			return Addr{}, err
		}
		a.IP = netip.AddrFrom16([16]byte(buf[:16]))
		a.Port = binary.BigEndian.Uint16(buf[16:])
	case atypDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return Addr{}, err
		}
		n := int(buf[0])
		if _, err := io.ReadFull(r, buf[:n+2]); err != nil {
			return Addr{}, err
		}
		name := buf[:n]
		if !ValidName(name) {
			return Addr{}, ErrName
		}
		a.Name = string(name)
		a.Port = binary.BigEndian.Uint16(buf[n:])
	default:
		return Addr{}, ErrAddrType
	}
	return a, nil
}

// ValidName reports whether s can be sent as a domain name: 1 to 255 bytes
// of printable ASCII other than space, '/', '\' and ':' (which would make
// the "host:port" form ambiguous).
func ValidName[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == '\\' {
			return false
		}
	}
	return true
}

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
