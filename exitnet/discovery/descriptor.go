package discovery

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Sentinels wrapped by the errors of ParseSignedDescriptor,
// ReadSignedDescriptor and SignedDescriptor.Verify, so that callers can count
// what they drop.
var (
	// ErrMalformed: the blob or its body does not decode, or the descriptor
	// it holds breaks a rule (a field out of range, a lifetime over
	// MaxDescriptorLifetime).
	ErrMalformed = errors.New("malformed descriptor")
	// ErrForged: the signature does not verify against the peer ID in the
	// body.
	ErrForged = errors.New("forged descriptor")
	// ErrExpired: the descriptor is past its expiry, or not yet valid.
	ErrExpired = errors.New("expired descriptor")
	// ErrMismatch: the descriptor is validly signed, but by another peer
	// than the one asked for.
	ErrMismatch = errors.New("descriptor of another peer")
)

const (
	// MaxSignedDescriptorLen bounds a signed descriptor blob, header and
	// signature included.
	MaxSignedDescriptorLen = wire.MaxDescriptorLen
	// MaxDescriptorLifetime bounds Expires - IssuedAt.
	MaxDescriptorLifetime = 7 * 24 * time.Hour
	// DescriptorClockSkew is how far before its IssuedAt a descriptor is
	// already accepted, for clocks that disagree.
	DescriptorClockSkew = 5 * time.Minute

	maxDescriptorBody = wire.MaxDescriptorBody
)

// descriptorDomain is prepended to the body before signing, so that a
// descriptor signature can never be taken for a signature over anything
// else the identity key signs.
const descriptorDomain = "swarmvpn descriptor v1\x00"

// Descriptor is what an exit says about itself, signed with its identity
// key. A client reads it before it sends anything through the exit, to know
// whether the exit will carry BitTorrent and forward a port.
//
// Its canonical encoding, the Body of a SignedDescriptor, is encoding/json
// of the struct, fields in the declared order, times in UTC to the second
// (RFC 3339, "2026-01-02T15:04:05Z") and Addrs never null. Decoding ignores
// fields it does not know, so a later version can add fields without a new
// signature domain.
type Descriptor struct {
	// ID is the exit's peer ID; the signature must verify against it.
	ID link.PeerID `json:"id"`
	// Addrs are the host:port where clients reach the exit.
	Addrs []string `json:"addrs"`
	// TCP and UDP say whether the exit carries TCP connections and UDP
	// associations.
	TCP bool `json:"tcp"`
	UDP bool `json:"udp"`
	// P2P says the exit carries BitTorrent: its policy blocks none of the
	// ports peers commonly use.
	P2P bool `json:"p2p"`
	// Forward says the exit lends forwarded ports, and FreePorts how many
	// it has free.
	Forward   bool `json:"forward"`
	FreePorts int  `json:"free_ports"`
	// MaxUDPPerClient is how many UDP associations one client may hold; 0
	// means not said.
	MaxUDPPerClient int `json:"max_udp_per_client,omitempty"`
	// Relay says the exit relays clients' links to other exits
	// (wire.KindRelay), for two-hop paths.
	Relay bool `json:"relay,omitempty"`
	// Bandwidth is the advertised capacity in bytes/s; 0 means unknown.
	Bandwidth int64 `json:"bandwidth,omitempty"`
	// Load is the exit's own estimate of how busy it is, from 0 to 1 (for
	// example clients / capacity).
	Load float64 `json:"load"`
	// Policy summarises the exit policy for people, e.g. "all ports except
	// 25; no private ranges".
	Policy string `json:"policy"`
	// Version is the exit's software version.
	Version string `json:"version"`
	// IssuedAt and Expires bound when the descriptor is valid; Expires may
	// be at most MaxDescriptorLifetime after IssuedAt.
	IssuedAt time.Time `json:"issued_at"`
	Expires  time.Time `json:"expires"`
}

// Capabilities named in Caps and in the "caps" mDNS TXT record.
const (
	CapTCP     = "tcp"
	CapUDP     = "udp"
	CapP2P     = "p2p"
	CapForward = "fwd"
	CapRelay   = "relay"
)

// Caps lists the capabilities d claims, in the order tcp, udp, p2p, fwd,
// relay.
func (d *Descriptor) Caps() []string {
	caps := make([]string, 0, 5)
	if d.TCP {
		caps = append(caps, CapTCP)
	}
	if d.UDP {
		caps = append(caps, CapUDP)
	}
	if d.P2P {
		caps = append(caps, CapP2P)
	}
	if d.Forward {
		caps = append(caps, CapForward)
	}
	if d.Relay {
		caps = append(caps, CapRelay)
	}
	return caps
}

// canonical returns d with its times in UTC to the second and Addrs non-nil.
func (d Descriptor) canonical() Descriptor {
	d.IssuedAt = d.IssuedAt.UTC().Truncate(time.Second)
	d.Expires = d.Expires.UTC().Truncate(time.Second)
	if d.Addrs == nil {
		d.Addrs = []string{}
	}
	return d
}

// check enforces the rules every descriptor must keep, signed or received.
func (d *Descriptor) check() error {
	var zero link.PeerID
	switch {
	case d.ID == zero:
		return errors.New("no peer ID")
	case d.IssuedAt.IsZero() || d.Expires.IsZero():
		return errors.New("issued_at and expires are required")
	case !d.Expires.After(d.IssuedAt):
		return fmt.Errorf("expires %s is not after issued_at %s", d.Expires.Format(time.RFC3339), d.IssuedAt.Format(time.RFC3339))
	case d.Expires.Sub(d.IssuedAt) > MaxDescriptorLifetime:
		return fmt.Errorf("lifetime %s is over the limit of %s", d.Expires.Sub(d.IssuedAt), MaxDescriptorLifetime)
	case d.FreePorts < 0 || d.MaxUDPPerClient < 0 || d.Bandwidth < 0:
		return errors.New("negative free_ports, max_udp_per_client or bandwidth")
	case math.IsNaN(d.Load) || d.Load < 0 || d.Load > 1:
		return fmt.Errorf("load %v is not between 0 and 1", d.Load)
	}
	for _, a := range d.Addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("address %q is not HOST:PORT", a)
		}
	}
	return nil
}

// Sign encodes d canonically and signs it with id, which must be the
// identity d.ID names. It refuses a descriptor that Verify would reject as
// malformed, or whose encoding would not fit MaxSignedDescriptorLen.
func (d Descriptor) Sign(id *link.Identity) (SignedDescriptor, error) {
	if d.ID != id.ID() {
		return SignedDescriptor{}, fmt.Errorf("sign descriptor of %s with the key of %s", d.ID.Short(), id.ID().Short())
	}
	d = d.canonical()
	if err := d.check(); err != nil {
		return SignedDescriptor{}, fmt.Errorf("sign descriptor: %w", err)
	}
	body, err := json.Marshal(d)
	if err != nil {
		return SignedDescriptor{}, fmt.Errorf("sign descriptor: %w", err)
	}
	if len(body) > maxDescriptorBody {
		return SignedDescriptor{}, fmt.Errorf("sign descriptor: %d bytes encoded, the limit is %d", len(body), maxDescriptorBody)
	}
	return SignedDescriptor{Body: body, Sig: id.Sign(descriptorMessage(body))}, nil
}

func descriptorMessage(body []byte) []byte {
	return append([]byte(descriptorDomain), body...)
}

// SignedDescriptor is a descriptor as it travels: the canonical encoding
// that was signed, and the signature. Verification checks the signature over
// these very bytes; it never encodes the descriptor again.
type SignedDescriptor struct {
	// Body is the canonical encoding of a Descriptor.
	Body []byte
	// Sig is the ed25519 signature, by the key Body's ID names, over
	// "swarmvpn descriptor v1\x00" followed by Body.
	Sig []byte
}

// MarshalBinary returns the blob that carries s, self-delimiting so that it
// can be read from a stream: the framing is wire's (SPEC.md, "Descriptors").
// BODY is UTF-8 JSON as described at Descriptor; SIG is over "swarmvpn
// descriptor v1" and a zero byte, followed by BODY.
func (s SignedDescriptor) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, wire.DescriptorLen(s.Body, s.Sig)))
}

// AppendBinary appends the blob of MarshalBinary to b.
func (s SignedDescriptor) AppendBinary(b []byte) ([]byte, error) {
	b, err := wire.AppendDescriptor(b, s.Body, s.Sig)
	if err != nil {
		return b, fmt.Errorf("marshal descriptor: %w", err)
	}
	return b, nil
}

// ParseSignedDescriptor parses the blob of MarshalBinary, which must be all
// of b. It checks only the framing, not the body or the signature: call
// Verify. The result does not share memory with b.
func ParseSignedDescriptor(b []byte) (SignedDescriptor, error) {
	body, sig, err := wire.ParseDescriptor(b)
	if err != nil {
		return SignedDescriptor{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return SignedDescriptor{Body: body, Sig: sig}, nil
}

// ReadSignedDescriptor reads one blob of MarshalBinary from r, reading no
// byte past it. Like ParseSignedDescriptor it checks only the framing. A
// stream that ends before the blob begins gives an error that wraps io.EOF.
func ReadSignedDescriptor(r io.Reader) (SignedDescriptor, error) {
	body, sig, err := wire.ReadDescriptor(r)
	if errors.Is(err, wire.ErrDescriptorBlob) {
		return SignedDescriptor{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err != nil {
		return SignedDescriptor{}, fmt.Errorf("read descriptor: %w", err)
	}
	return SignedDescriptor{Body: body, Sig: sig}, nil
}

// Verify checks s and returns the descriptor it carries: that the body
// decodes (nothing after the JSON object) and keeps the rules of Descriptor,
// that the signature verifies against the ID in the body, that this ID is
// want unless want is zero, and that now is within [IssuedAt -
// DescriptorClockSkew, Expires]. Its errors wrap ErrMalformed, ErrForged,
// ErrMismatch or ErrExpired, checked in that order.
func (s SignedDescriptor) Verify(want link.PeerID, now time.Time) (Descriptor, error) {
	d, err := decodeDescriptor(s.Body)
	if err != nil {
		return Descriptor{}, err
	}
	if len(s.Sig) != ed25519.SignatureSize || !ed25519.Verify(d.ID.PublicKey(), descriptorMessage(s.Body), s.Sig) {
		return Descriptor{}, fmt.Errorf("%w: signature does not verify for %s", ErrForged, d.ID.Short())
	}
	var zero link.PeerID
	if want != zero && d.ID != want {
		return Descriptor{}, fmt.Errorf("%w: signed by %s, want %s", ErrMismatch, d.ID.Short(), want.Short())
	}
	if now.After(d.Expires) {
		return Descriptor{}, fmt.Errorf("%w: %s expired at %s", ErrExpired, d.ID.Short(), d.Expires.Format(time.RFC3339))
	}
	if now.Before(d.IssuedAt.Add(-DescriptorClockSkew)) {
		return Descriptor{}, fmt.Errorf("%w: %s not valid until %s", ErrExpired, d.ID.Short(), d.IssuedAt.Format(time.RFC3339))
	}
	return d, nil
}

// decodeDescriptor decodes a body: one JSON object, with nothing before or
// after it, not even white space.
func decodeDescriptor(body []byte) (Descriptor, error) {
	if len(body) == 0 || len(body) > maxDescriptorBody {
		return Descriptor{}, fmt.Errorf("%w: body of %d bytes, want 1 to %d", ErrMalformed, len(body), maxDescriptorBody)
	}
	if body[0] != '{' {
		return Descriptor{}, fmt.Errorf("%w: body is not a JSON object", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var d Descriptor
	if err := dec.Decode(&d); err != nil {
		return Descriptor{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.InputOffset() != int64(len(body)) {
		return Descriptor{}, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	if err := d.check(); err != nil {
		return Descriptor{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return d, nil
}

// Digest is a short hash of the body, the first 16 bytes of its SHA-256 in
// lowercase hex (32 characters): the "d" TXT record of an mDNS
// advertisement, by which a client can tell whether the descriptor it holds
// is current.
func (s SignedDescriptor) Digest() string {
	sum := sha256.Sum256(s.Body)
	return hex.EncodeToString(sum[:16])
}
