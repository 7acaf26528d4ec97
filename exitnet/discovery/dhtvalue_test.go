package discovery

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

func TestDHTValue(t *testing.T) {
	id, other := seededIdentity(t, 1), seededIdentity(t, 2)
	good := signTest(t, id, testDescriptor(id.ID()))
	v, err := good.DHTValue()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a typical descriptor is %d bytes as a dht value", len(v))
	d, s, err := ParseDHTValue(v, id.ID(), testIssued)
	if err != nil || d.ID != id.ID() || !bytes.Equal(s.Body, good.Body) {
		t.Fatalf("ParseDHTValue: %+v, %v", d, err)
	}

	expired := testDescriptor(id.ID())
	expired.Expires = testIssued.Add(-time.Hour)
	expired.IssuedAt = expired.Expires.Add(-2 * time.Hour)
	noAddr := testDescriptor(id.ID())
	noAddr.Addrs = nil
	for _, tc := range []struct {
		name string
		v    []byte
		key  link.PeerID
		want error
	}{
		{"signed by another key than the item's", v, other.ID(), ErrMismatch},
		{"oversize", append(bytes.Clone(v), make([]byte, MaxDHTValue)...), id.ID(), ErrMalformed},
		{"trailing byte", append(bytes.Clone(v), 0), id.ID(), ErrMalformed},
		{"forged", marshalTest(t, SignedDescriptor{Body: good.Body, Sig: other.Sign(descriptorMessage(good.Body))}), id.ID(), ErrForged},
		{"expired", marshalTest(t, signTest(t, id, expired)), id.ID(), ErrExpired},
		{"no address", marshalTest(t, signTest(t, id, noAddr)), id.ID(), ErrMalformed},
		{"not a descriptor", []byte("hello"), id.ID(), ErrMalformed},
		{"empty", nil, id.ID(), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseDHTValue(tc.v, tc.key, testIssued); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCompactDescriptor(t *testing.T) {
	id := seededIdentity(t, 1)
	d := testDescriptor(id.ID())
	s, err := CompactDescriptor(d, id)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := decodeDescriptor(s.Body); len(got.Addrs) != len(d.Addrs) || got.Policy != d.Policy {
		t.Fatalf("a descriptor that fits was changed: %+v", got)
	}
	for i := range 40 {
		d.Addrs = append(d.Addrs, "[2001:db8::"+strings.Repeat("a", i%4+1)+"]:4433")
	}
	d.Policy = strings.Repeat("é", 400)
	s, err = CompactDescriptor(d, id)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.DHTValue()
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := ParseDHTValue(v, id.ID(), testIssued)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Addrs) == 0 || got.Addrs[0] != d.Addrs[0] || len(got.Policy) >= len(d.Policy) {
		t.Fatalf("trimmed addresses: %v", got.Addrs)
	}
	t.Logf("trimmed to %d addresses, policy of %d bytes, value of %d bytes", len(got.Addrs), len(got.Policy), len(v))
}

// FuzzParseDHTValue: whatever the bytes, ParseDHTValue returns a verified
// descriptor of the key asked for, or an error; it never panics.
func FuzzParseDHTValue(f *testing.F) {
	id := seededIdentity(f, 1)
	good := signTest(f, id, testDescriptor(id.ID()))
	v, _ := good.DHTValue()
	f.Add(v)
	f.Add(v[:len(v)-1])
	f.Add(v[:5])
	f.Add(marshalTest(f, signBody(id, "{}")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, s, err := ParseDHTValue(b, id.ID(), testIssued)
		if err != nil {
			return
		}
		if len(b) > MaxDHTValue || d.ID != id.ID() || len(d.Addrs) == 0 {
			t.Fatalf("accepted %d bytes: %+v", len(b), d)
		}
		if again, err := s.DHTValue(); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("value does not round-trip: %v", err)
		}
	})
}
