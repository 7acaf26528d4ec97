package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestAddrRoundTrip(t *testing.T) {
	for _, a := range []Addr{
		{IP: netip.MustParseAddr("192.0.2.1"), Port: 6881},
		{IP: netip.MustParseAddr("2001:db8::1"), Port: 1},
		{IP: netip.MustParseAddr("::ffff:192.0.2.1"), Port: 80},
		{Name: "tracker.example", Port: 443},
		{Name: strings.Repeat("a", 255), Port: 65535},
	} {
		b, err := AppendAddr([]byte("x"), a)
		if err != nil {
			t.Fatalf("%v: %v", a, err)
		}
		if len(b)-1 != AddrLen(a) {
			t.Errorf("%v: AddrLen %d, appended %d", a, AddrLen(a), len(b)-1)
		}
		got, rest, err := CutAddr(append(b[1:], "tail"...))
		if err != nil || got != a || string(rest) != "tail" {
			t.Errorf("%v: cut %v, rest %q, %v", a, got, rest, err)
		}
	}
	if _, err := AppendAddr(nil, Addr{Name: "a b"}); !errors.Is(err, ErrName) {
		t.Errorf("bad name: %v", err)
	}
	if n := AddrLen(Addr{Name: "a:b"}); n != 0 {
		t.Errorf("AddrLen of a bad name %d, want 0", n)
	}
}

// FuzzCutAddr: whatever the bytes, CutAddr returns an error or an address
// that encodes back to the bytes it consumed.
func FuzzCutAddr(f *testing.F) {
	f.Add([]byte{1, 192, 0, 2, 1, 0x1a, 0xe1, 'x'})
	f.Add([]byte{4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80})
	f.Add([]byte{3, 3, 'a', 'b', 'c', 0, 80})
	f.Add([]byte{3, 0, 0, 80})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, rest, err := CutAddr(b)
		if err != nil {
			if !errors.Is(err, ErrShort) && !errors.Is(err, ErrName) && !errors.Is(err, ErrAddrType) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		enc, err := AppendAddr(nil, a)
		if err != nil {
			t.Fatalf("decoded %v does not encode: %v", a, err)
		}
		if !bytes.Equal(enc, b[:len(b)-len(rest)]) {
			t.Fatalf("%x decoded to %v, which encodes to %x", b, a, enc)
		}
	})
}

// FuzzParseDescriptor: whatever the bytes, a blob parses to a body and
// signature that frame back to the same bytes, or is refused as malformed;
// reading it from a stream agrees.
func FuzzParseDescriptor(f *testing.F) {
	blob, _ := AppendDescriptor(nil, []byte(`{"id":"x"}`), make([]byte, DescriptorSigLen))
	f.Add(blob)
	f.Add(blob[:len(blob)-1])
	f.Add([]byte{1, 0, 0, 64})
	f.Add([]byte{2, 0, 1, 64, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		body, sig, err := ParseDescriptor(b)
		rbody, rsig, rerr := ReadDescriptor(bytes.NewReader(b))
		if err != nil {
			if len(b) >= descriptorHeaderLen && !errors.Is(err, ErrDescriptorBlob) {
				t.Fatalf("error %v does not wrap ErrDescriptorBlob", err)
			}
			return
		}
		if rerr != nil || !bytes.Equal(rbody, body) || !bytes.Equal(rsig, sig) {
			t.Fatalf("read disagrees with parse: %v", rerr)
		}
		again, err := AppendDescriptor(nil, body, sig)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("parsed blob does not frame back: %v", err)
		}
	})
}
