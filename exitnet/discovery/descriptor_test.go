package discovery

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

// seededIdentity returns the identity whose ed25519 seed is 32 bytes of
// seed, so that IDs, bodies and signatures are the same on every run.
func seededIdentity(t testing.TB, seed byte) *link.Identity {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := link.LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// seed1ID is the peer ID of seededIdentity(t, 1).
const seed1ID = "rkeohxlubhyzl7ks3mwtzos5olfgocn7dwkbeg7toseadnapn5oa"

var testIssued = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testDescriptor(id link.PeerID) Descriptor {
	return Descriptor{
		ID:              id,
		Addrs:           []string{"192.0.2.7:4433", "[2001:db8::7]:4433"},
		TCP:             true,
		UDP:             true,
		P2P:             true,
		Forward:         true,
		FreePorts:       12,
		MaxUDPPerClient: 16,
		Bandwidth:       12_500_000,
		Load:            0.25,
		Policy:          "all ports except 25; no private ranges",
		Version:         "0.1.0",
		IssuedAt:        testIssued,
		Expires:         testIssued.Add(24 * time.Hour),
	}
}

func signTest(t testing.TB, id *link.Identity, d Descriptor) SignedDescriptor {
	t.Helper()
	s, err := d.Sign(id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signBody signs body as it is, bypassing Sign's encoding and checks.
func signBody(id *link.Identity, body string) SignedDescriptor {
	return SignedDescriptor{Body: []byte(body), Sig: id.Sign(descriptorMessage([]byte(body)))}
}

func marshalTest(t testing.TB, s SignedDescriptor) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDescriptorGolden pins the canonical encoding and the blob framing.
func TestDescriptorGolden(t *testing.T) {
	id := seededIdentity(t, 1)
	s := signTest(t, id, testDescriptor(id.ID()))
	const wantBody = `{"id":"` + seed1ID + `",` +
		`"addrs":["192.0.2.7:4433","[2001:db8::7]:4433"],"tcp":true,"udp":true,"p2p":true,"forward":true,` +
		`"free_ports":12,"max_udp_per_client":16,"bandwidth":12500000,"load":0.25,` +
		`"policy":"all ports except 25; no private ranges","version":"0.1.0",` +
		`"issued_at":"2026-03-01T12:00:00Z","expires":"2026-03-02T12:00:00Z"}`
	if id.ID().String() != seed1ID {
		t.Fatalf("seeded ID = %s; the golden body below needs updating", id.ID())
	}
	if string(s.Body) != wantBody {
		t.Errorf("body\n%s\nwant\n%s", s.Body, wantBody)
	}
	blob := marshalTest(t, s)
	n := len(wantBody)
	wantHead := []byte{1, byte(n >> 8), byte(n), 64}
	if !bytes.HasPrefix(blob, wantHead) || len(blob) != 4+len(wantBody)+64 {
		t.Errorf("blob starts % x and has %d bytes, want % x and %d", blob[:4], len(blob), wantHead, 4+len(wantBody)+64)
	}
	if !bytes.Equal(blob[4+len(wantBody):], s.Sig) || !ed25519.Verify(id.ID().PublicKey(), append([]byte("swarmvpn descriptor v1\x00"), wantBody...), s.Sig) {
		t.Error("the blob does not end with a signature over the domain string and the body")
	}
	if d := s.Digest(); len(d) != 32 || strings.Trim(d, "0123456789abcdef") != "" {
		t.Errorf("digest %q: want 32 lowercase hex characters", d)
	}
	if d, err := hex.DecodeString(s.Digest()); err != nil || !bytes.Equal(d, sha256Prefix(s.Body)) {
		t.Errorf("digest %s is not the first 16 bytes of SHA-256 of the body", s.Digest())
	}
}

func TestDescriptorRoundTrip(t *testing.T) {
	id := seededIdentity(t, 1)
	want := testDescriptor(id.ID())
	blob := marshalTest(t, signTest(t, id, want))
	s, err := ParseSignedDescriptor(blob)
	if err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{testIssued, testIssued.Add(-DescriptorClockSkew), want.Expires} {
		got, err := s.Verify(id.ID(), now)
		if err != nil {
			t.Fatalf("verify at %s: %v", now, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("verified %+v\nwant %+v", got, want)
		}
	}
	if _, err := s.Verify(link.PeerID{}, testIssued); err != nil {
		t.Errorf("verify with no wanted ID: %v", err)
	}
	if again := marshalTest(t, s); !bytes.Equal(again, blob) {
		t.Error("parsed descriptor marshals to other bytes")
	}
	got, err := ReadSignedDescriptor(io.MultiReader(bytes.NewReader(blob), strings.NewReader("next")))
	if err != nil || !bytes.Equal(got.Body, s.Body) || !bytes.Equal(got.Sig, s.Sig) {
		t.Errorf("ReadSignedDescriptor = %v, %v", got, err)
	}
	if !reflect.DeepEqual(want.Caps(), []string{"tcp", "udp", "p2p", "fwd"}) {
		t.Errorf("caps %q", want.Caps())
	}
}

func TestDescriptorCanonical(t *testing.T) {
	id := seededIdentity(t, 1)
	d := testDescriptor(id.ID())
	utc := signTest(t, id, d)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	d.IssuedAt = d.IssuedAt.In(zone).Add(999 * time.Millisecond)
	d.Expires = d.Expires.In(zone).Add(1)
	if other := signTest(t, id, d); !bytes.Equal(other.Body, utc.Body) || other.Digest() != utc.Digest() {
		t.Errorf("times in another zone with fractions encode as\n%s\nwant\n%s", other.Body, utc.Body)
	}
	d = testDescriptor(id.ID())
	d.Addrs = nil
	if s := signTest(t, id, d); !bytes.Contains(s.Body, []byte(`"addrs":[]`)) {
		t.Errorf("nil addrs encode as %s", s.Body)
	}
}

func TestDescriptorSignRefuses(t *testing.T) {
	id, other := seededIdentity(t, 1), seededIdentity(t, 2)
	for _, tc := range []struct {
		name   string
		change func(*Descriptor)
	}{
		{"other ID", func(d *Descriptor) { d.ID = other.ID() }},
		{"no issued_at", func(d *Descriptor) { d.IssuedAt = time.Time{} }},
		{"no expires", func(d *Descriptor) { d.Expires = time.Time{} }},
		{"expires before issue", func(d *Descriptor) { d.Expires = d.IssuedAt.Add(-time.Hour) }},
		{"lifetime over 7 days", func(d *Descriptor) { d.Expires = d.IssuedAt.Add(MaxDescriptorLifetime + time.Second) }},
		{"load over 1", func(d *Descriptor) { d.Load = 1.5 }},
		{"negative free ports", func(d *Descriptor) { d.FreePorts = -1 }},
		{"bad address", func(d *Descriptor) { d.Addrs = []string{"192.0.2.7"} }},
		{"too big", func(d *Descriptor) { d.Policy = strings.Repeat("x", MaxSignedDescriptorLen) }},
	} {
		d := testDescriptor(id.ID())
		tc.change(&d)
		if _, err := d.Sign(id); err == nil {
			t.Errorf("%s: signed", tc.name)
		}
	}
	d := testDescriptor(id.ID())
	d.Expires = d.IssuedAt.Add(MaxDescriptorLifetime)
	if _, err := d.Sign(id); err != nil {
		t.Errorf("lifetime of exactly 7 days: %v", err)
	}
}

func TestDescriptorForged(t *testing.T) {
	id, other := seededIdentity(t, 1), seededIdentity(t, 2)
	good := signTest(t, id, testDescriptor(id.ID()))

	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x01
		return b
	}
	policyAt := bytes.Index(good.Body, []byte("all ports"))
	otherBody := bytes.Replace(good.Body, []byte(id.ID().String()), []byte(other.ID().String()), 1)
	for _, tc := range []struct {
		name string
		s    SignedDescriptor
	}{
		{"body byte flipped", SignedDescriptor{Body: flip(good.Body, policyAt), Sig: good.Sig}},
		{"sig byte flipped", SignedDescriptor{Body: good.Body, Sig: flip(good.Sig, 10)}},
		{"signed by another key, ID kept", SignedDescriptor{Body: good.Body, Sig: other.Sign(descriptorMessage(good.Body))}},
		{"ID swapped, sig kept", SignedDescriptor{Body: otherBody, Sig: good.Sig}},
		{"signed without the domain", SignedDescriptor{Body: good.Body, Sig: id.Sign(good.Body)}},
		{"short sig", SignedDescriptor{Body: good.Body, Sig: good.Sig[:63]}},
	} {
		if _, err := tc.s.Verify(link.PeerID{}, testIssued); !errors.Is(err, ErrForged) {
			t.Errorf("%s: %v, want ErrForged", tc.name, err)
		}
	}
	// Whatever byte of the blob changes, the descriptor is refused.
	blob := marshalTest(t, good)
	for i := range blob {
		s, err := ParseSignedDescriptor(flip(blob, i))
		if err != nil {
			continue
		}
		if _, err := s.Verify(id.ID(), testIssued); err == nil {
			t.Fatalf("byte %d flipped: verified", i)
		}
	}
}

func TestDescriptorExpiry(t *testing.T) {
	id := seededIdentity(t, 1)
	d := testDescriptor(id.ID())
	s := signTest(t, id, d)
	for _, tc := range []struct {
		name string
		now  time.Time
		err  error
	}{
		{"at issue", d.IssuedAt, nil},
		{"at expiry", d.Expires, nil},
		{"a second after expiry", d.Expires.Add(time.Second), ErrExpired},
		{"a year later", d.Expires.AddDate(1, 0, 0), ErrExpired},
		{"within the clock skew", d.IssuedAt.Add(-DescriptorClockSkew), nil},
		{"not yet valid", d.IssuedAt.Add(-DescriptorClockSkew - time.Second), ErrExpired},
	} {
		if _, err := s.Verify(id.ID(), tc.now); !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
}

func TestDescriptorMismatch(t *testing.T) {
	id, other := seededIdentity(t, 1), seededIdentity(t, 2)
	s := signTest(t, id, testDescriptor(id.ID()))
	if _, err := s.Verify(other.ID(), testIssued); !errors.Is(err, ErrMismatch) {
		t.Errorf("verify for another ID: %v, want ErrMismatch", err)
	}
}

// TestDescriptorStrictBody signs hand-written bodies, so that only the
// decoder stands between them and a client.
func TestDescriptorStrictBody(t *testing.T) {
	id := seededIdentity(t, 1)
	good := string(signTest(t, id, testDescriptor(id.ID())).Body)
	week := strings.Replace(good, `"expires":"2026-03-02T12:00:00Z"`, `"expires":"2026-03-08T12:00:00Z"`, 1)
	for _, tc := range []struct {
		name string
		body string
		ok   bool
	}{
		{"canonical", good, true},
		{"unknown field", strings.TrimSuffix(good, "}") + `,"later":{"x":[1,2]}}`, true},
		{"lifetime of 7 days", week, true},
		{"lifetime over 7 days", strings.Replace(week, `12:00:00Z"}`, `12:00:01Z"}`, 1), false},
		{"trailing space", good + " ", false},
		{"trailing newline", good + "\n", false},
		{"second object", good + "{}", false},
		{"leading space", " " + good, false},
		{"null", "null", false},
		{"empty object", "{}", false},
		{"array", "[" + good + "]", false},
		{"truncated", good[:len(good)-1], false},
		{"load not a number", strings.Replace(good, `"load":0.25`, `"load":"x"`, 1), false},
		{"negative load", strings.Replace(good, `"load":0.25`, `"load":-0.25`, 1), false},
		{"bad peer ID", strings.Replace(good, `"id":"rke`, `"id":"1ke`, 1), false},
		{"no expiry", strings.Replace(good, `,"expires":"2026-03-02T12:00:00Z"`, ``, 1), false},
		{"bad time", strings.Replace(good, `2026-03-01T12:00:00Z`, `yesterday`, 1), false},
		{"over the limit", strings.TrimSuffix(good, "}") + `,"pad":"` + strings.Repeat("x", MaxSignedDescriptorLen) + `"}`, false},
	} {
		_, err := signBody(id, tc.body).Verify(id.ID(), testIssued)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", tc.name, err)
		}
	}
}

func TestParseSignedDescriptorFraming(t *testing.T) {
	id := seededIdentity(t, 1)
	blob := marshalTest(t, signTest(t, id, testDescriptor(id.ID())))
	for n := range len(blob) {
		if _, err := ParseSignedDescriptor(blob[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d bytes: %v, want ErrMalformed", n, err)
		}
		if _, err := ReadSignedDescriptor(bytes.NewReader(blob[:n])); err == nil {
			t.Fatalf("read truncated to %d bytes: no error", n)
		} else if n > 0 && errors.Is(err, io.EOF) {
			t.Fatalf("read truncated to %d bytes: %v, want no io.EOF", n, err)
		}
	}
	if _, err := ParseSignedDescriptor(append(bytes.Clone(blob), 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing byte: %v", err)
	}
	for _, tc := range []struct {
		name   string
		header []byte
	}{
		{"version 2", []byte{2, blob[1], blob[2], 64}},
		{"empty body", []byte{1, 0, 0, 64}},
		{"body over the limit", []byte{1, 0x1f, 0xbd, 64}}, // 8125
		{"short signature", []byte{1, blob[1], blob[2], 63}},
	} {
		b := append(tc.header, blob[4:]...)
		if _, err := ParseSignedDescriptor(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", tc.name, err)
		}
		if _, err := ReadSignedDescriptor(bytes.NewReader(b)); !errors.Is(err, ErrMalformed) {
			t.Errorf("read %s: %v, want ErrMalformed", tc.name, err)
		}
	}
	// The biggest body there may be: 8124 bytes, an 8192-byte blob.
	big := SignedDescriptor{Body: bytes.Repeat([]byte{'x'}, MaxSignedDescriptorLen-4-64), Sig: make([]byte, 64)}
	b := marshalTest(t, big)
	if len(b) != MaxSignedDescriptorLen {
		t.Fatalf("biggest blob has %d bytes", len(b))
	}
	if _, err := ParseSignedDescriptor(b); err != nil {
		t.Errorf("biggest blob: %v", err)
	}
	big.Body = append(big.Body, 'x')
	if _, err := big.MarshalBinary(); err == nil {
		t.Error("marshalled a blob over the limit")
	}
}

func sha256Prefix(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:16]
}

func FuzzParseSignedDescriptor(f *testing.F) {
	id := seededIdentity(f, 1)
	good := signTest(f, id, testDescriptor(id.ID()))
	blob := marshalTest(f, good)
	f.Add(blob)
	f.Add(blob[:len(blob)-1])
	f.Add(blob[:4])
	f.Add(marshalTest(f, signBody(id, "{}")))
	f.Add(marshalTest(f, signBody(id, string(good.Body)+" ")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSignedDescriptor(b)
		if err != nil {
			return
		}
		if again, err := s.MarshalBinary(); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("parsed blob marshals to %x, %v", again, err)
		}
		r, err := ReadSignedDescriptor(bytes.NewReader(b))
		if err != nil || !bytes.Equal(r.Body, s.Body) || !bytes.Equal(r.Sig, s.Sig) {
			t.Fatalf("ReadSignedDescriptor disagrees with ParseSignedDescriptor: %v", err)
		}
		_ = s.Digest()
		d, err := s.Verify(link.PeerID{}, testIssued)
		if err != nil {
			return
		}
		if err := d.check(); err != nil {
			t.Fatalf("verified a descriptor that breaks the rules: %v", err)
		}
	})
}

// FuzzVerifyDescriptorBody feeds the body decoder validly signed bytes,
// which a forger cannot produce but a buggy or hostile exit can.
func FuzzVerifyDescriptorBody(f *testing.F) {
	id := seededIdentity(f, 1)
	good := signTest(f, id, testDescriptor(id.ID()))
	f.Add(good.Body)
	f.Add([]byte(`{"id":"` + id.ID().String() + `","issued_at":"2026-03-01T12:00:00Z","expires":"2026-03-01T12:00:01Z"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := signBody(id, string(body)).Verify(id.ID(), testIssued)
		if err != nil {
			return
		}
		if err := d.check(); err != nil {
			t.Fatalf("verified a descriptor that breaks the rules: %v", err)
		}
		if d.ID != id.ID() || testIssued.After(d.Expires) || testIssued.Before(d.IssuedAt.Add(-DescriptorClockSkew)) {
			t.Fatalf("verified %+v at %s", d, testIssued)
		}
	})
}
