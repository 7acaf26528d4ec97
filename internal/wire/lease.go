package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A forward stream (kind 4), after its successful response, carries lease
// messages both ways:
//
//	LEN (2) | TYPE (1) | BODY
//
// LEN counts TYPE and BODY: 1 to MaxLeaseMsg. A receiver ignores a TYPE it
// does not know, and bytes at the end of a BODY it does not expect, so that
// later versions can add to them.

// MaxLeaseMsg bounds LEN.
const MaxLeaseMsg = 256

// Lease message types.
const (
	// LeaseProbe: client → exit, ProbeRequest: probe the forwarded port
	// from outside the client's link. Exit → client, ProbeResult: what the
	// probe found.
	LeaseProbe byte = 1
	// LeaseInboundTCP: client → exit, one byte: 1 to accept TCP
	// connections on the forwarded port, 0 to refuse them (the port's
	// listener is closed, so that a peer's SYN gets a reset) because the
	// client's local target accepts none. Exit → client, one byte
	// InboundTCPState: what the exit does now.
	LeaseInboundTCP byte = 2
	// LeasePublicPort: exit → client, PublicPort: the router in front of
	// the exit moved the forward to another external port, which peers
	// must now be told. A client sends none; an exit ignores one.
	LeasePublicPort byte = 3
)

// ErrLeaseMsg reports a lease message that cannot be read: after it, the
// stream's messages cannot be told apart any more.
var ErrLeaseMsg = errors.New("malformed lease message")

// AppendLeaseMsg appends a message of type typ with body.
func AppendLeaseMsg(b []byte, typ byte, body []byte) ([]byte, error) {
	if 1+len(body) > MaxLeaseMsg {
		return b, fmt.Errorf("%w: body of %d bytes", ErrLeaseMsg, len(body))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(1+len(body)))
	b = append(b, typ)
	return append(b, body...), nil
}

// ReadLeaseMsg reads one message into buf, which must hold MaxLeaseMsg
// bytes; body aliases buf.
func ReadLeaseMsg(r io.Reader, buf []byte) (typ byte, body []byte, err error) {
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(buf))
	if n < 1 || n > MaxLeaseMsg {
		return 0, nil, fmt.Errorf("%w: length %d", ErrLeaseMsg, n)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return buf[0], buf[1:n], nil
}

// ProbeRequest asks the exit to probe the forwarded port. ID comes back in
// the result.
type ProbeRequest struct{ ID uint32 }

// ProbeTCP is what a TCP connection to the forwarded port found.
type ProbeTCP byte

const (
	ProbeTCPAccepted ProbeTCP = 0 // the client connected it to its local target
	ProbeTCPRefused  ProbeTCP = 1 // the client refused it: its local target did not accept
	ProbeTCPClosed   ProbeTCP = 2 // the exit accepts no TCP on the port now, as the client asked
	ProbeTCPFailed   ProbeTCP = 3 // no answer in time, or the exit could not connect
)

// ProbeUDP is what a datagram to the forwarded port found.
type ProbeUDP byte

const (
	ProbeUDPAnswered      ProbeUDP = 0 // the port answered (a uTP SYN was acknowledged)
	ProbeUDPSilent        ProbeUDP = 1 // carried to the client's association; no answer in time
	ProbeUDPNoAssociation ProbeUDP = 2 // no UDP association of the client holds the port
	ProbeUDPFailed        ProbeUDP = 3 // the exit could not send it
)

// ProbeResult is the exit's answer to a ProbeRequest.
type ProbeResult struct {
	ID  uint32
	TCP ProbeTCP
	UDP ProbeUDP
}

// InboundTCPState is what the exit does with TCP connections to the port.
type InboundTCPState byte

const (
	InboundTCPClosed    InboundTCPState = 0 // refused: the listener is closed
	InboundTCPListening InboundTCPState = 1 // accepted and carried to the client
	InboundTCPLost      InboundTCPState = 2 // asked to listen again, and the port is taken
)

func (p ProbeRequest) Body() []byte { return binary.BigEndian.AppendUint32(nil, p.ID) }

// ParseProbeRequest reads a ProbeRequest's body.
func ParseProbeRequest(body []byte) (ProbeRequest, error) {
	if len(body) < 4 {
		return ProbeRequest{}, fmt.Errorf("%w: probe request of %d bytes", ErrLeaseMsg, len(body))
	}
	return ProbeRequest{ID: binary.BigEndian.Uint32(body)}, nil
}

func (p ProbeResult) Body() []byte {
	return append(binary.BigEndian.AppendUint32(nil, p.ID), byte(p.TCP), byte(p.UDP))
}

// ParseProbeResult reads a ProbeResult's body.
func ParseProbeResult(body []byte) (ProbeResult, error) {
	if len(body) < 6 {
		return ProbeResult{}, fmt.Errorf("%w: probe result of %d bytes", ErrLeaseMsg, len(body))
	}
	return ProbeResult{ID: binary.BigEndian.Uint32(body), TCP: ProbeTCP(body[4]), UDP: ProbeUDP(body[5])}, nil
}

func (t ProbeTCP) String() string {
	switch t {
	case ProbeTCPAccepted:
		return "accepted"
	case ProbeTCPRefused:
		return "refused by the local target"
	case ProbeTCPClosed:
		return "closed (the local target accepts no TCP)"
	case ProbeTCPFailed:
		return "no answer"
	}
	return fmt.Sprintf("unknown (%d)", byte(t))
}

func (u ProbeUDP) String() string {
	switch u {
	case ProbeUDPAnswered:
		return "answered"
	case ProbeUDPSilent:
		return "no answer"
	case ProbeUDPNoAssociation:
		return "no UDP association holds the port"
	case ProbeUDPFailed:
		return "not sent"
	}
	return fmt.Sprintf("unknown (%d)", byte(u))
}

// PublicPort is the port at which peers on the internet now reach the
// forwarded port: what the forward response's bound PORT said, changed.
type PublicPort struct{ Port uint16 }

func (p PublicPort) Body() []byte { return binary.BigEndian.AppendUint16(nil, p.Port) }

// ParsePublicPort reads a PublicPort's body; port 0 is refused.
func ParsePublicPort(body []byte) (PublicPort, error) {
	if len(body) < 2 {
		return PublicPort{}, fmt.Errorf("%w: public port of %d bytes", ErrLeaseMsg, len(body))
	}
	p := PublicPort{Port: binary.BigEndian.Uint16(body)}
	if p.Port == 0 {
		return PublicPort{}, fmt.Errorf("%w: public port 0", ErrLeaseMsg)
	}
	return p, nil
}
