package proxy

import (
	"errors"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Every datagram between a SOCKS5 client and its UDP relay starts with a
// header (RFC 1928 §7):
//
//	RSV (2) | FRAG (1) | ATYP (1) | DST.ADDR | DST.PORT (2) | DATA
//
// From the client the address is the destination (an IP, or a name the far
// side resolves); towards the client it is the source, always an IP.

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
	dst, data, err = wire.CutAddr(b[3:])
	switch {
	case errors.Is(err, wire.ErrShort):
		err = errUDPShort
	case errors.Is(err, wire.ErrName):
		err = errUDPName
	case errors.Is(err, wire.ErrAddrType):
		err = errUDPAddrType
	}
	return dst, data, err
}

// udpHeaderLen is the length of the header appendUDPHeader writes for a, or
// 0 when it writes none.
func udpHeaderLen(a wire.Addr) int {
	if !a.IP.IsValid() && a.Name == "" {
		return 0
	}
	if n := wire.AddrLen(unmap(a)); n > 0 {
		return 3 + n
	}
	return 0
}

// appendUDPHeader appends the header for a, with FRAG 0: ATYP 1 for an IPv4
// address, including an IPv4-mapped IPv6 one, 4 for IPv6, 3 for a name. It
// does not allocate when b has room for the header.
func appendUDPHeader(b []byte, a wire.Addr) ([]byte, error) {
	if !a.IP.IsValid() && a.Name == "" {
		return b, errUDPNoAddr
	}
	start := len(b)
	b, err := wire.AppendAddr(append(b, 0, 0, 0), unmap(a))
	if err != nil {
		return b[:start], errUDPName
	}
	return b, nil
}

// unmap turns an IPv4-mapped IPv6 address into the IPv4 one: the form a
// SOCKS5 client expects for an IPv4 peer.
func unmap(a wire.Addr) wire.Addr {
	a.IP = a.IP.Unmap()
	return a
}
