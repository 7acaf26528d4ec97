package udpbatch

import (
	"bytes"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Runs of datagrams that the kernel cuts itself arrive as the datagrams
// they were: whole, in order, none merged with or split by another, at
// every bound of a run (64 segments, 65,000 bytes, a shorter last one, a
// change of destination or size).
func TestGSORunsArriveAsDatagrams(t *testing.T) {
	for _, tc := range []struct{ name, network, from, to, dst string }{
		{"v4", "udp4", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1"},
		{"dual-stack to v4", "udp", "[::]:0", "127.0.0.1:0", "127.0.0.1"},
		{"v6", "udp6", "[::1]:0", "[::1]:0", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := listen(t, tc.network, tc.from)
			r1, r2 := listen(t, tc.network, tc.to), listen(t, tc.network, tc.to)
			ip := netip.MustParseAddr(tc.dst)
			d1 := netip.AddrPortFrom(ip, localAddr(r1).Port())
			d2 := netip.AddrPortFrom(ip, localAddr(r2).Port())
			testGSORuns(t, sc, r1, r2, d1, d2)
		})
	}
}

func testGSORuns(t *testing.T, sc, r1, r2 *net.UDPConn, d1, d2 netip.AddrPort) {
	s, err := New(sc, 80)
	if err != nil {
		t.Fatal(err)
	}
	if s.gsoBelow == 0 {
		t.Skip("this kernel has no UDP_SEGMENT")
	}
	for _, r := range []*net.UDPConn{r1, r2} {
		r.SetReadBuffer(4 << 20)
	}
	type dgram struct {
		size int
		to   netip.AddrPort
	}
	same := func(n, size int, to netip.AddrPort) []dgram {
		var ds []dgram
		for range n {
			ds = append(ds, dgram{size, to})
		}
		return ds
	}
	for _, tc := range []struct {
		name string
		ds   []dgram
	}{
		{"more than 64 segments", same(70, 100, d1)},
		{"more than 65,000 bytes", same(47, 1400, d1)},
		{"shorter last, other destination", append(append(append(
			[]dgram{{100, d1}, {100, d1}, {100, d1}, {50, d1}, {100, d1}, {100, d1}},
			same(2, 100, d2)...), dgram{100, d1}), dgram{200, d1}, dgram{1, d1}, dgram{0, d1}, dgram{1, d1})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]Message, len(tc.ds))
			want := map[netip.AddrPort][][]byte{}
			for i, d := range tc.ds {
				b := make([]byte, d.size)
				for j := range b {
					b[j] = byte(i + j)
				}
				out[i] = Message{Buf: b, Addr: d.to}
				want[d.to] = append(want[d.to], b)
			}
			if n, err := s.WriteBatch(out); n != len(out) || err != nil {
				t.Fatalf("WriteBatch: %d, %v; want %d", n, err, len(out))
			}
			for _, r := range []struct {
				c    *net.UDPConn
				addr netip.AddrPort
			}{{r1, d1}, {r2, d2}} {
				buf := make([]byte, 70000)
				for i, w := range want[r.addr] {
					r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
					n, _, err := r.c.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Fatalf("datagram %d of %d to %v: %v", i, len(want[r.addr]), r.addr, err)
					}
					if !bytes.Equal(buf[:n], w) {
						t.Fatalf("datagram %d to %v: %d bytes, want %d (%x…, want %x…)", i, r.addr, n, len(w), buf[:min(n, 4)], w[:min(len(w), 4)])
					}
				}
			}
			if s.gsoBelow != 1<<16 {
				t.Fatalf("runs refused: below %d", s.gsoBelow)
			}
		})
	}
}

func TestGSORun(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:1")
	b := netip.MustParseAddrPort("127.0.0.1:2")
	ms := func(to netip.AddrPort, sizes ...int) []Message {
		var out []Message
		for _, s := range sizes {
			out = append(out, Message{Buf: make([]byte, s), Addr: to})
		}
		return out
	}
	many := func(n, size int) []Message {
		var sizes []int
		for range n {
			sizes = append(sizes, size)
		}
		return ms(a, sizes...)
	}
	for _, tc := range []struct {
		name  string
		ms    []Message
		below int
		want  int
	}{
		{"one", ms(a, 100), 1 << 16, 1},
		{"equal", ms(a, 100, 100, 100), 1 << 16, 3},
		{"shorter last ends the run", ms(a, 100, 100, 50, 100), 1 << 16, 3},
		{"longer one ends the run", ms(a, 100, 100, 101), 1 << 16, 2},
		{"empty first", ms(a, 0, 0), 1 << 16, 1},
		{"empty one ends the run", ms(a, 100, 0, 100), 1 << 16, 1},
		{"other destination", append(ms(a, 100, 100), ms(b, 100)...), 1 << 16, 2},
		{"64 segments at most", many(70, 10), 1 << 16, 64},
		{"65,000 bytes at most", many(50, 1400), 1 << 16, 46},
		{"at the bytes bound", many(50, 1300), 1 << 16, 50},
		{"refused at this size", ms(a, 1400, 1400), 1400, 1},
		{"below the refused size", ms(a, 1399, 1399), 1400, 2},
		{"off", ms(a, 100, 100), 0, 1},
	} {
		if got := gsoRun(tc.ms, tc.below); got != tc.want {
			t.Errorf("%s: run of %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestGSORefused(t *testing.T) {
	for _, tc := range []struct {
		errno   syscall.Errno
		size    int
		below   int
		refused bool
	}{
		{unix.EINVAL, 1400, 1400, true}, // over the route's MTU: smaller ones may pass
		{unix.EINVAL, 576, 0, true},
		{unix.EIO, 100, 0, true},
		{unix.EOPNOTSUPP, 1400, 0, true},
		{unix.ENOPROTOOPT, 1400, 0, true},
		{unix.ENETUNREACH, 1400, 0, false},
		{unix.EPERM, 100, 0, false},
	} {
		below, refused := gsoRefused(tc.errno, tc.size)
		if below != tc.below || refused != tc.refused {
			t.Errorf("%v at %d bytes: below %d refused %v, want %d %v", tc.errno, tc.size, below, refused, tc.below, tc.refused)
		}
	}
}
