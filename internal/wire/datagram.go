package wire

import (
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
)

// A UDP association's stream carries datagrams as frames:
//
//	LEN (2) | ATYP (1) | ADDR | PORT (2) | DATA
//
// LEN counts the bytes after it. From client to exit the address is the
// destination (an IP or a name the exit resolves); from exit to client it
// is the source, always an IP.

// MaxDatagram is the largest payload a frame can carry: what fits in LEN
// after the longest address.
const MaxDatagram = 0xffff - (1 + 1 + 255 + 2)

// MaxFrameLen is the size of the largest frame, LEN included.
const MaxFrameLen = 2 + 0xffff

// ErrFrame reports a frame whose contents are not a valid datagram.
var ErrFrame = errors.New("malformed datagram frame")

// AppendDatagram appends the frame for payload to/from addr.
func AppendDatagram(b []byte, addr Addr, payload []byte) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0)
	b, err := appendAddr(b, addr)
	if err != nil {
		return b[:start], err
	}
	if len(b)-start-2+len(payload) > 0xffff {
		return b[:start], ErrFrame
	}
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[start:], uint16(len(b)-start-2))
	return b, nil
}

// ReadFrame reads one frame's body (the bytes after LEN) into buf, which
// must hold MaxFrameLen bytes, and returns it.
func ReadFrame(r io.Reader, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(buf))
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf[:n], nil
}

// ParseDatagram splits a frame body into address and payload. The payload
// aliases body. It allocates only for a domain name.
func ParseDatagram(body []byte) (Addr, []byte, error) {
	if len(body) < 1 {
		return Addr{}, nil, ErrFrame
	}
	var a Addr
	var rest []byte
	switch body[0] {
	case atypIPv4:
		if len(body) < 1+4+2 {
			return Addr{}, nil, ErrFrame
		}
		a.IP = netip.AddrFrom4([4]byte(body[1:5]))
		rest = body[5:]
	case atypIPv6:
		if len(body) < 1+16+2 {
			return Addr{}, nil, ErrFrame
		}
		a.IP = netip.AddrFrom16([16]byte(body[1:17]))
		rest = body[17:]
	case atypDomain:
		if len(body) < 2 {
			return Addr{}, nil, ErrFrame
		}
		n := int(body[1])
		if len(body) < 2+n+2 {
			return Addr{}, nil, ErrFrame
		}
		if !ValidName(body[2 : 2+n]) {
			return Addr{}, nil, ErrName
		}
		a.Name = string(body[2 : 2+n])
		rest = body[2+n:]
	default:
		return Addr{}, nil, ErrAddrType
	}
	a.Port = binary.BigEndian.Uint16(rest)
	return a, rest[2:], nil
}
