package udpbatch

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
)

func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func localAddr(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// Datagrams written in a batch arrive whole, in order, one per message,
// from the sender's address, and none is merged with or split by another.
func TestBatchRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, network, from, to, dst string }{
		{"v4", "udp4", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1"},
		{"dual-stack to v4", "udp", "[::]:0", "127.0.0.1:0", "127.0.0.1"},
		{"v6", "udp6", "[::1]:0", "[::1]:0", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := listen(t, tc.network, tc.from)
			rc := listen(t, tc.network, tc.to)
			s, err := New(sc, 8)
			if err != nil {
				t.Fatal(err)
			}
			r, err := New(rc, 8)
			if err != nil {
				t.Fatal(err)
			}
			dst := netip.AddrPortFrom(netip.MustParseAddr(tc.dst), localAddr(rc).Port())
			const count = 20 // more than one batch each way
			out := make([]Message, count)
			for i := range out {
				out[i] = Message{Buf: bytes.Repeat([]byte{byte(i)}, 1+i*97), Addr: dst}
			}
			if n, err := s.WriteBatch(out); n != count || err != nil {
				t.Fatalf("WriteBatch: %d, %v", n, err)
			}
			in := make([]Message, 8)
			for i := range in {
				in[i].Buf = make([]byte, 4096)
			}
			got := 0
			for got < count {
				n, err := r.ReadBatch(in)
				if err != nil || n < 1 {
					t.Fatalf("ReadBatch: %d, %v", n, err)
				}
				for _, m := range in[:n] {
					if want := out[got].Buf; !bytes.Equal(m.Buf[:m.N], want) || m.Trunc {
						t.Fatalf("datagram %d: %d bytes (trunc %v), want %d", got, m.N, m.Trunc, len(want))
					}
					if m.Addr.Port() != localAddr(sc).Port() || !m.Addr.Addr().IsLoopback() || m.Addr.Addr().Is4In6() {
						t.Fatalf("datagram %d from %v, want loopback port %d", got, m.Addr, localAddr(sc).Port())
					}
					got++
				}
			}
		})
	}
}

// A datagram longer than its message's buffer is reported truncated.
func TestBatchTruncated(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("one datagram per call here, into a buffer callers size for any datagram")
	}
	sc := listen(t, "udp4", "127.0.0.1:0")
	rc := listen(t, "udp4", "127.0.0.1:0")
	r, _ := New(rc, 4)
	if _, err := sc.WriteToUDPAddrPort(make([]byte, 100), localAddr(rc)); err != nil {
		t.Fatal(err)
	}
	in := []Message{{Buf: make([]byte, 10)}}
	n, err := r.ReadBatch(in)
	if n != 1 || err != nil || in[0].N != 10 || !in[0].Trunc {
		t.Fatalf("ReadBatch: %d, %v, %+v; want one truncated datagram of 10", n, err, in[0])
	}
}

// An IPv6 destination on an IPv4 socket fails that message alone.
func TestBatchWrongFamily(t *testing.T) {
	sc := listen(t, "udp4", "127.0.0.1:0")
	rc := listen(t, "udp4", "127.0.0.1:0")
	s, _ := New(sc, 4)
	ms := []Message{
		{Buf: []byte("a"), Addr: localAddr(rc)},
		{Buf: []byte("b"), Addr: netip.MustParseAddrPort("[::1]:9")},
		{Buf: []byte("c"), Addr: localAddr(rc)},
	}
	n, err := s.WriteBatch(ms)
	if n != 1 || err == nil {
		t.Fatalf("WriteBatch: %d, %v; want 1 and an error", n, err)
	}
	if n, err := s.WriteBatch(ms[2:]); n != 1 || err != nil {
		t.Fatalf("WriteBatch of the rest: %d, %v", n, err)
	}
	buf := make([]byte, 10)
	for _, want := range []string{"a", "c"} {
		n, _, err := rc.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
}

func TestNewRejectsEmptyBatch(t *testing.T) {
	if _, err := New(listen(t, "udp4", "127.0.0.1:0"), 0); err == nil {
		t.Fatal("New with max 0: no error")
	}
}

// BenchmarkBatch sends and receives batches of 32 datagrams: no
// allocation per batch or per datagram.
func BenchmarkBatch(b *testing.B) {
	for _, size := range []int{100, 1400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			sc := listen(b, "udp4", "127.0.0.1:0")
			rc := listen(b, "udp4", "127.0.0.1:0")
			rc.SetReadBuffer(4 << 20)
			s, _ := New(sc, 32)
			r, _ := New(rc, 32)
			out, in := make([]Message, 32), make([]Message, 32)
			for i := range out {
				out[i] = Message{Buf: make([]byte, size), Addr: localAddr(rc)}
				in[i].Buf = make([]byte, 2048)
			}
			b.SetBytes(int64(size * len(out)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.WriteBatch(out); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < len(out); {
					n, err := r.ReadBatch(in)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
		})
	}
}
