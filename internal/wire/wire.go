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

// Version is the only version of the stream header this package speaks.
const Version = 1

// Kind says what a stream is for.
type Kind uint8

const (
	// KindConnect asks the exit to open a TCP connection to Dst and splice it
	// to the stream.
	KindConnect Kind = 1
	// KindUDP asks the exit for a UDP association carried on the stream.
	KindUDP Kind = 2
	// KindInbound is opened by the exit towards the client for a connection
	// that arrived on a forwarded port; Dst is the remote peer.
	KindInbound Kind = 3
	// KindForward asks the exit to lend the client a port.
	KindForward Kind = 4
	// KindDescriptor asks the exit for signed exit descriptors.
	KindDescriptor Kind = 5
	// KindReach asks an exit to dial Dst and complete a link handshake with
	// the asker's own peer ID there: the asker learns whether the internet
	// reaches it at Dst, and (in the answer's bound address) the address the
	// answering exit sees it come from.
	KindReach Kind = 6
)

func (k Kind) String() string {
	switch k {
	case KindConnect:
		return "connect"
	case KindUDP:
		return "udp"
	case KindInbound:
		return "inbound"
	case KindForward:
		return "forward"
	case KindDescriptor:
		return "descriptor"
	case KindReach:
		return "reach"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Address types, numbered as in SOCKS5 (RFC 1928).
const (
	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4
)

// MaxHeaderLen is the longest encoded request or response: version, kind or
// status, address type, a 255-byte name with its length, and a port.
const MaxHeaderLen = 3 + 1 + 255 + 2

// Errors returned by the decoders. All of them mean the peer sent bytes that
// are not a valid header; the stream should be dropped.
var (
	ErrVersion  = errors.New("unsupported header version")
	ErrAddrType = errors.New("unsupported address type")
	ErrName     = errors.New("invalid domain name")
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

// Request opens a stream.
type Request struct {
	Kind Kind
	Dst  Addr
}

// AppendBinary appends the encoded request to b.
func (r Request) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, Version, byte(r.Kind))
	return AppendAddr(b, r.Dst)
}

// ReadRequest reads one request from r. It reads exactly the request's bytes
// and nothing after them.
func ReadRequest(r io.Reader) (Request, error) {
	var buf [MaxHeaderLen]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return Request{}, err
	}
	if buf[0] != Version {
		return Request{}, fmt.Errorf("%w %d", ErrVersion, buf[0])
	}
	kind := Kind(buf[1])
	dst, err := readAddr(r, buf[:])
	if err != nil {
		return Request{}, err
	}
	return Request{Kind: kind, Dst: dst}, nil
}

// Response answers a Request.
type Response struct {
	Status Status
	// Bound is the address the exit used for the request: the local address
	// of its outgoing connection, or of the UDP socket of an association.
	Bound Addr
}

// AppendBinary appends the encoded response to b.
func (r Response) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, Version, byte(r.Status))
	return AppendAddr(b, r.Bound)
}

// ReadResponse reads one response from r, and nothing after it.
func ReadResponse(r io.Reader) (Response, error) {
	var buf [MaxHeaderLen]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return Response{}, err
	}
	if buf[0] != Version {
		return Response{}, fmt.Errorf("%w %d", ErrVersion, buf[0])
	}
	st := Status(buf[1])
	bound, err := readAddr(r, buf[:])
	if err != nil {
		return Response{}, err
	}
	return Response{Status: st, Bound: bound}, nil
}
