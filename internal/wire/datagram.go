package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
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
	b, err := AppendDatagramHeader(b, addr, len(payload))
	if err != nil {
		return b, err
	}
	return append(b, payload...), nil
}

// AppendDatagramHeader appends LEN, ATYP, address and port: the frame
// header for a payload of n bytes that the caller puts after it. A caller
// that reads payloads behind room for the longest header writes the header
// in place, without copying the payload, by appending to a slice of that
// room with no length.
func AppendDatagramHeader(b []byte, addr Addr, n int) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0)
	b, err := AppendAddr(b, addr)
	if err != nil {
		return b[:start], err
	}
	if len(b)-start-2+n > 0xffff {
		return b[:start], ErrFrame
	}
	binary.BigEndian.PutUint16(b[start:], uint16(len(b)-start-2+n))
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

// PeekFrame returns the next frame's body (the bytes after LEN) from r
// without consuming it: it stays valid until the next read from r, and the
// caller discards 2+len(body) bytes to move past the frame. r must have
// room for MaxFrameLen bytes. Several frames may arrive in one read, and a
// frame may span reads: LEN alone delimits datagrams.
func PeekFrame(r *bufio.Reader) ([]byte, error) {
	h, err := r.Peek(2)
	if err != nil {
		if err == io.EOF && len(h) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := 2 + int(binary.BigEndian.Uint16(h))
	f, err := r.Peek(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return f[2:], nil
}

// ParseDatagram splits a frame body into address and payload. The payload
// aliases body. It allocates only for a domain name.
func ParseDatagram(body []byte) (Addr, []byte, error) {
	a, rest, err := CutAddr(body)
	if errors.Is(err, ErrShort) {
		err = ErrFrame
	}
	return a, rest, err
}

// Frames cuts the pieces of an association's stream, as they arrive, into
// frames: LEN alone delimits them, a piece may hold several, and one may
// span pieces. The zero value is ready to use.
type Frames struct {
	// pend holds the start of a frame cut at a piece's end; done, the
	// frame last completed from such a start, which a caller may still
	// hold. They trade places as frames are completed.
	pend, done []byte
}

// Split calls f with the body (the bytes after LEN) of each frame that p
// completes, in order, and keeps the start of one cut at p's end for the
// next call. A body is valid until the next call of Split or Reset.
func (d *Frames) Split(p []byte, f func(body []byte)) {
	if len(d.pend) > 0 {
		if len(d.pend) < 2 {
			k := min(2-len(d.pend), len(p))
			d.pend = append(d.pend, p[:k]...)
			p = p[k:]
		}
		if len(d.pend) < 2 {
			return
		}
		n := 2 + int(binary.BigEndian.Uint16(d.pend))
		k := min(n-len(d.pend), len(p))
		d.pend = append(d.pend, p[:k]...)
		p = p[k:]
		if len(d.pend) < n {
			return
		}
		d.pend, d.done = d.done[:0], d.pend
		f(d.done[2:])
	}
	for len(p) >= 2 {
		n := 2 + int(binary.BigEndian.Uint16(p))
		if len(p) < n {
			break
		}
		f(p[2:n])
		p = p[n:]
	}
	d.pend = append(d.pend, p...)
}

// Pending returns the start of the frame cut at the end of the last piece,
// if any: valid until the next call of Split or Reset.
func (d *Frames) Pending() []byte { return d.pend }

// Reset starts over with pending as the start of a frame that the next
// piece goes on with (a reader's leftover, say). It keeps no reference to
// pending, which must be shorter than MaxFrameLen.
func (d *Frames) Reset(pending []byte) {
	d.pend = append(d.pend[:0], pending...)
}

// Whole returns how many frames p would complete after what is pending,
// without taking p: an upper bound of the datagrams a piece brings.
func (d *Frames) Whole(p []byte) int {
	n := 0
	if len(d.pend) > 0 {
		var h [2]byte
		k := copy(h[:], d.pend)
		copy(h[k:], p)
		if len(d.pend)+len(p) < 2 {
			return 0
		}
		end := 2 + int(binary.BigEndian.Uint16(h[:])) - len(d.pend)
		if end > len(p) {
			return 0
		}
		p = p[end:]
		n++
	}
	for len(p) >= 2 {
		end := 2 + int(binary.BigEndian.Uint16(p))
		if end > len(p) {
			break
		}
		p = p[end:]
		n++
	}
	return n
}
