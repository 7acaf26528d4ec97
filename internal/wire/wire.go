package wire

import (
	"errors"
	"fmt"
	"io"
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
