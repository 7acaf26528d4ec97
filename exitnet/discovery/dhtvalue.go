package discovery

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

// An exit publishes itself on the Mainline DHT as a BEP 44 mutable item
// signed by its identity key (its peer ID is that key), under the salt
// "swarmvpn/exit/v1". The item's value is the exit's signed descriptor blob
// itself (SPEC.md, "Descriptors"): the same bytes an exit sends on a link,
// checked by the same Verify.
//
// Why the full signed descriptor and not a re-encoding: one format and one
// verifier for every way a descriptor travels (link, mDNS digest, peer
// exchange, cache, DHT), so no rule can hold in one and be forgotten in
// another; a descriptor read from the DHT can go into the cache and be
// passed on as it is; and it fits. A typical descriptor is 450-550 bytes
// as a blob, within BEP 44's 1000 (996 for the byte string). When an exit's
// descriptor would not fit (many addresses, a long policy summary), the
// exit signs a trimmed one for the DHT (CompactDescriptor): a shorter
// policy text, fewer addresses, never a different meaning for a field.
// A JSON body costs about twice a binary one; at this size that is
// nothing, while a second encoding would be a second parser of untrusted
// bytes.
//
// The BEP 44 signature (checked by the DHT code) proves the item is the
// exit's; the descriptor's own signature and rules are checked again here,
// and the descriptor must name the very key the item was found under.

// MaxDHTValue is the largest descriptor blob that fits a BEP 44 value: a
// bencoded byte string of at most 1000 bytes ("996:" and 996 bytes).
const MaxDHTValue = 996

// DHTValue returns the blob of s for a BEP 44 item, or an error if it does
// not fit MaxDHTValue.
func (s SignedDescriptor) DHTValue() ([]byte, error) {
	b, err := s.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if len(b) > MaxDHTValue {
		return nil, fmt.Errorf("descriptor blob of %d bytes does not fit a dht item (at most %d)", len(b), MaxDHTValue)
	}
	return b, nil
}

// ParseDHTValue reads the value of the BEP 44 item found under key's
// public key: the blob must be at most MaxDHTValue bytes, frame one signed
// descriptor, verify (Verify's rules: body, signature, lifetime, expiry),
// name key, and hold at least one address. Its errors wrap ErrMalformed,
// ErrForged, ErrMismatch or ErrExpired.
func ParseDHTValue(v []byte, key link.PeerID, now time.Time) (Descriptor, SignedDescriptor, error) {
	if len(v) > MaxDHTValue {
		return Descriptor{}, SignedDescriptor{}, fmt.Errorf("%w: dht value of %d bytes, at most %d", ErrMalformed, len(v), MaxDHTValue)
	}
	if key == (link.PeerID{}) {
		return Descriptor{}, SignedDescriptor{}, errors.New("dht value: no key to check it against")
	}
	s, err := ParseSignedDescriptor(v)
	if err != nil {
		return Descriptor{}, SignedDescriptor{}, err
	}
	d, err := s.Verify(key, now)
	if err != nil {
		return Descriptor{}, SignedDescriptor{}, err
	}
	if len(d.Addrs) == 0 {
		return Descriptor{}, SignedDescriptor{}, fmt.Errorf("%w: dht descriptor of %s has no address", ErrMalformed, key.Short())
	}
	return d, s, nil
}

// CompactDescriptor signs d for the DHT: as it is when its blob fits
// MaxDHTValue, otherwise with its policy summary and version shortened,
// and then its addresses cut to those that fit (the first is kept).
func CompactDescriptor(d Descriptor, id *link.Identity) (SignedDescriptor, error) {
	try := func(d Descriptor) (SignedDescriptor, bool, error) {
		s, err := d.Sign(id)
		if err != nil {
			return SignedDescriptor{}, false, err
		}
		_, err = s.DHTValue()
		return s, err == nil, nil
	}
	if s, ok, err := try(d); err != nil || ok {
		return s, err
	}
	for _, f := range []*string{&d.Policy, &d.Version} {
		for len(*f) > 0 {
			*f = truncateUTF8(*f, len(*f)/2)
			if s, ok, err := try(d); err != nil || ok {
				return s, err
			}
		}
	}
	for len(d.Addrs) > 1 {
		d.Addrs = d.Addrs[:len(d.Addrs)-1]
		if s, ok, err := try(d); err != nil || ok {
			return s, err
		}
	}
	return SignedDescriptor{}, errors.New("descriptor does not fit a dht item even trimmed (is one address very long?)")
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
