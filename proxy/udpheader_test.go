package proxy

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// udpHeaderTests are well-formed and malformed client datagrams; they also
// seed FuzzUDPHeader.
var udpHeaderTests = []struct {
	name string
	in   []byte
	dst  wire.Addr
	data string
	err  error
}{
	{"ipv4", []byte{0, 0, 0, 1, 192, 0, 2, 1, 0x1a, 0xe1, 'h', 'i'},
		wire.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 6881}, "hi", nil},
	{"ipv4 no data", []byte{0, 0, 0, 1, 192, 0, 2, 1, 0, 53},
		wire.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 53}, "", nil},
	{"ipv6", append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 0x1a, 0xe1, 'x'),
		wire.Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 6881}, "x", nil},
	{"ipv4-mapped ipv6", append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("::ffff:192.0.2.1").AsSlice()...), 0, 80),
		wire.Addr{IP: netip.MustParseAddr("::ffff:192.0.2.1"), Port: 80}, "", nil},
	{"name", append([]byte{0, 0, 0, 3, 15}, "tracker.example\x1b\x39d1:ad2:id"...),
		wire.Addr{Name: "tracker.example", Port: 6969}, "d1:ad2:id", nil},
	{"rsv ignored", []byte{0xff, 0xff, 0, 1, 10, 0, 0, 1, 0, 1, 0},
		wire.Addr{IP: netip.MustParseAddr("10.0.0.1"), Port: 1}, "\x00", nil},
	{"frag", []byte{0, 0, 1, 1, 192, 0, 2, 1, 0, 80, 'x'}, wire.Addr{}, "", errUDPFrag},
	{"frag last", []byte{0, 0, 0x81, 1, 192, 0, 2, 1, 0, 80}, wire.Addr{}, "", errUDPFrag},
	{"empty", []byte{}, wire.Addr{}, "", errUDPShort},
	{"rsv only", []byte{0, 0, 0}, wire.Addr{}, "", errUDPShort},
	{"ipv4 short", []byte{0, 0, 0, 1, 192, 0, 2, 1, 0}, wire.Addr{}, "", errUDPShort},
	{"ipv6 short", []byte{0, 0, 0, 4, 0x20, 1, 0xd, 0xb8}, wire.Addr{}, "", errUDPShort},
	{"name no length", []byte{0, 0, 0, 3}, wire.Addr{}, "", errUDPShort},
	{"name short", []byte{0, 0, 0, 3, 5, 'a', 'b', 0, 80}, wire.Addr{}, "", errUDPShort},
	{"empty name", []byte{0, 0, 0, 3, 0, 0, 80}, wire.Addr{}, "", errUDPName},
	{"name with colon", []byte{0, 0, 0, 3, 3, 'a', ':', 'b', 0, 80}, wire.Addr{}, "", errUDPName},
	{"name with NUL", []byte{0, 0, 0, 3, 3, 'a', 0, 'b', 0, 80}, wire.Addr{}, "", errUDPName},
	{"unknown atyp", []byte{0, 0, 0, 2, 192, 0, 2, 1, 0, 80}, wire.Addr{}, "", errUDPAddrType},
}

func TestParseUDPHeader(t *testing.T) {
	for _, tt := range udpHeaderTests {
		t.Run(tt.name, func(t *testing.T) {
			dst, data, err := parseUDPHeader(tt.in)
			if err != tt.err {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if dst != tt.dst || string(data) != tt.data {
				t.Fatalf("got %v %q, want %v %q", dst, data, tt.dst, tt.data)
			}
		})
	}
}

func TestAppendUDPHeader(t *testing.T) {
	tests := []struct {
		name string
		addr wire.Addr
		want []byte
		err  error
	}{
		{"ipv4", wire.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 6881},
			[]byte{0, 0, 0, 1, 192, 0, 2, 1, 0x1a, 0xe1}, nil},
		// Towards the client an IPv4 source is always sent as IPv4.
		{"ipv4-mapped", wire.Addr{IP: netip.MustParseAddr("::ffff:192.0.2.1"), Port: 80},
			[]byte{0, 0, 0, 1, 192, 0, 2, 1, 0, 80}, nil},
		{"ipv6", wire.Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 443},
			append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 1, 0xbb), nil},
		{"ipv6 with zone", wire.Addr{IP: netip.MustParseAddr("fe80::1%eth0"), Port: 1},
			append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("fe80::1").AsSlice()...), 0, 1), nil},
		{"name", wire.Addr{Name: "localhost", Port: 7},
			append([]byte{0, 0, 0, 3, 9}, "localhost\x00\x07"...), nil},
		{"bad name", wire.Addr{Name: "a b", Port: 7}, nil, errUDPName},
		{"long name", wire.Addr{Name: strings.Repeat("a", 256), Port: 7}, nil, errUDPName},
		{"no address", wire.Addr{Port: 7}, nil, errUDPNoAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appendUDPHeader([]byte("prefix"), tt.addr)
			if err != tt.err {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				if string(got) != "prefix" {
					t.Errorf("on error, returned %q, want the input", got)
				}
				if n := udpHeaderLen(tt.addr); n != 0 {
					t.Errorf("udpHeaderLen %d, want 0", n)
				}
				return
			}
			if !bytes.Equal(got[6:], tt.want) || string(got[:6]) != "prefix" {
				t.Errorf("got % x, want prefix and % x", got, tt.want)
			}
			if n := udpHeaderLen(tt.addr); n != len(tt.want) {
				t.Errorf("udpHeaderLen %d, want %d", n, len(tt.want))
			}
		})
	}
}

// The relay parses and builds a header for every datagram: with an IP
// address, neither allocates.
func TestUDPHeaderAllocs(t *testing.T) {
	for _, ip := range []string{"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"} {
		t.Run(ip, func(t *testing.T) {
			a := wire.Addr{IP: netip.MustParseAddr(ip), Port: 6881}
			datagram, err := appendUDPHeader(nil, a)
			if err != nil {
				t.Fatal(err)
			}
			datagram = append(datagram, make([]byte, 1400)...)
			buf := make([]byte, maxIPUDPHeaderLen+len(datagram))
			if n := testing.AllocsPerRun(1000, func() {
				dst, data, err := parseUDPHeader(datagram)
				if err != nil || len(data) != 1400 || dst.Port != 6881 {
					t.Fatal("parse failed")
				}
			}); n != 0 {
				t.Errorf("parseUDPHeader: %v allocations, want 0", n)
			}
			if n := testing.AllocsPerRun(1000, func() {
				h := udpHeaderLen(a)
				start := maxIPUDPHeaderLen - h
				if _, err := appendUDPHeader(buf[start:start], a); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("appendUDPHeader: %v allocations, want 0", n)
			}
		})
	}
}

// FuzzUDPHeader parses arbitrary client datagrams; a successful parse must
// build back into a header that parses to the same destination and data.
func FuzzUDPHeader(f *testing.F) {
	for _, tt := range udpHeaderTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		dst, data, err := parseUDPHeader(in)
		if err != nil {
			if dst != (wire.Addr{}) || data != nil {
				t.Fatalf("error %v with %v %q", err, dst, data)
			}
			return
		}
		if dst.IP.IsValid() == (dst.Name != "") {
			t.Fatalf("parsed %#v: want exactly one of IP and name", dst)
		}
		h := udpHeaderLen(dst)
		b, err := appendUDPHeader(nil, dst)
		if err != nil {
			t.Fatalf("append %v: %v", dst, err)
		}
		if len(b) != h {
			t.Fatalf("header of %d bytes, udpHeaderLen says %d", len(b), h)
		}
		if !dst.IP.Is4In6() {
			// Apart from RSV, the same bytes.
			if want := in[2 : len(in)-len(data)]; !bytes.Equal(b[2:], want) {
				t.Fatalf("rebuilt % x, want % x", b[2:], want)
			}
		}
		b = append(b, data...)
		dst2, data2, err := parseUDPHeader(b)
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if dst2.IP.Unmap() != dst.IP.Unmap() || dst2.Name != dst.Name || dst2.Port != dst.Port ||
			!bytes.Equal(data2, data) {
			t.Fatalf("round trip: %v %q, then %v %q", dst, data, dst2, data2)
		}
	})
}
