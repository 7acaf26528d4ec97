package socks

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestDatagramRoundTrip(t *testing.T) {
	tests := []struct {
		dst     string
		wantSrc netip.AddrPort // what ParseDatagram gives for the same bytes
	}{
		{"192.0.2.1:53", netip.MustParseAddrPort("192.0.2.1:53")},
		{"[2001:db8::2]:6881", netip.MustParseAddrPort("[2001:db8::2]:6881")},
		{"[::ffff:192.0.2.1]:53", netip.MustParseAddrPort("192.0.2.1:53")},
		{"router.example:6881", netip.AddrPort{}},
	}
	for _, tt := range tests {
		for _, payload := range [][]byte{nil, []byte("d1:ad2:id20:")} {
			d, err := AppendDatagram([]byte("keep"), tt.dst, payload)
			if err != nil {
				t.Fatalf("%s: %v", tt.dst, err)
			}
			if !bytes.HasPrefix(d, []byte("keep\x00\x00\x00")) {
				t.Fatalf("%s: % x does not start with what was there and RSV, FRAG", tt.dst, d)
			}
			src, got, err := ParseDatagram(d[len("keep"):])
			if err != nil || src != tt.wantSrc || !bytes.Equal(got, payload) {
				t.Fatalf("%s: parsed %v %q %v, want %v %q", tt.dst, src, got, err, tt.wantSrc, payload)
			}
		}
	}
	if d, err := AppendDatagram([]byte("keep"), "no port", []byte("x")); err == nil || string(d) != "keep" {
		t.Fatalf("bad destination: % x, %v; want the buffer unchanged and an error", d, err)
	}
}

func TestParseDatagramRejects(t *testing.T) {
	tests := []struct {
		name string
		d    []byte
		want error
	}{
		{"empty", nil, ErrShortDatagram},
		{"header only", b(0, 0, 0), ErrShortDatagram},
		{"fragment", b(0, 0, 1, 1, 127, 0, 0, 1, 0, 9, "x"), ErrFragment},
		{"short IPv4", b(0, 0, 0, 1, 127, 0, 0, 1, 0), ErrShortDatagram},
		{"short IPv6", b(0, 0, 0, 4, make([]byte, 17)), ErrShortDatagram},
		{"short name", b(0, 0, 0, 3, 5, "abc", 0, 1), ErrShortDatagram},
		{"no name length", b(0, 0, 0, 3), ErrShortDatagram},
		{"address type", b(0, 0, 0, 2, 0, 0), ErrAddrType},
	}
	for _, tt := range tests {
		if _, _, err := ParseDatagram(tt.d); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func FuzzParseDatagram(f *testing.F) {
	f.Add(b(0, 0, 0, 1, 127, 0, 0, 1, 0, 9, "x"))
	f.Add(b(0, 0, 0, 3, 4, "name", 0, 9))
	f.Add(b(0, 0, 0, 4, make([]byte, 18), "y"))
	f.Fuzz(func(t *testing.T, d []byte) {
		src, payload, err := ParseDatagram(d)
		if err != nil {
			return
		}
		if len(payload) > len(d)-4-1-2 {
			t.Fatalf("payload of %d bytes from a datagram of %d", len(payload), len(d))
		}
		if src.IsValid() {
			again, err := AppendDatagram(nil, src.String(), payload)
			if err != nil {
				t.Fatal(err)
			}
			if s2, p2, err := ParseDatagram(again); err != nil || s2 != src || !bytes.Equal(p2, payload) {
				t.Fatalf("round trip of %v %q gave %v %q %v", src, payload, s2, p2, err)
			}
		}
	})
}

// fakeRelay answers one UDP ASSOCIATE with relay 0.0.0.0:PORT (the
// proxy's own address, then) and echoes each datagram to its sender with
// the destination as source.
func fakeRelay(t *testing.T) (proxyAddr string, relay *net.UDPConn) {
	t.Helper()
	relay, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); relay.Close() })
	port := relay.LocalAddr().(*net.UDPAddr).Port
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		if _, err := c.Read(buf); err != nil { // the greeting
			return
		}
		c.Write(b(5, 0))
		if _, err := c.Read(buf); err != nil { // the request
			return
		}
		c.Write(b(5, 0, 0, 1, 0, 0, 0, 0, port>>8, port&0xff))
		c.Read(buf) // held until the client closes
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := relay.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			relay.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return ln.Addr().String(), relay
}

func TestAssociation(t *testing.T) {
	proxyAddr, relay := fakeRelay(t)
	a, err := Client{Addr: proxyAddr}.Associate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if want := relay.LocalAddr().(*net.UDPAddr).AddrPort(); a.Relay != want {
		t.Fatalf("relay %v, want %v (the proxy's address for 0.0.0.0)", a.Relay, want)
	}

	// A stranger's datagram, which looks like one from the relay, is
	// passed over.
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	fake, _ := AppendDatagram(nil, "192.0.2.9:9", []byte("not from the relay"))
	if _, err := stranger.WriteToUDPAddrPort(fake, a.Conn.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	if err := a.Send("192.0.2.1:53", []byte("query")); err != nil {
		t.Fatal(err)
	}
	a.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, src, err := a.Receive(make([]byte, 2048))
	if err != nil || string(got) != "query" || src != netip.MustParseAddrPort("192.0.2.1:53") {
		t.Fatalf("received %q from %v (%v), want the echo of query from 192.0.2.1:53", got, src, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
