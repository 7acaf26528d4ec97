package udpbatch

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A run the kernel refuses after others in the same sendmmsg went out (it
// returns how many messages it sent, not datagrams) is sent again one
// datagram per header: every datagram before and after it arrives once,
// in order, and WriteBatch's count and error are in datagrams. The kernel
// answers EINVAL for a datagram to port 0, so a run there is refused like
// one over the route's MTU.
func TestGSORefusedAfterPartialSend(t *testing.T) {
	sc := listen(t, "udp4", "127.0.0.1:0")
	r := listen(t, "udp4", "127.0.0.1:0")
	s, err := New(sc, 16)
	if err != nil {
		t.Fatal(err)
	}
	if s.gsoBelow == 0 {
		t.Skip("this kernel has no UDP_SEGMENT")
	}
	dst := localAddr(r)
	nowhere := netip.AddrPortFrom(dst.Addr(), 0)
	const size = 1000 // over gsoMinMTU: refused, smaller runs may still go
	var ms []Message
	var want [][]byte
	add := func(n int, to netip.AddrPort) {
		for range n {
			b := bytes.Repeat([]byte{byte(len(ms))}, size)
			ms = append(ms, Message{Buf: b, Addr: to})
			if to == dst {
				want = append(want, b)
			}
		}
	}
	add(3, dst)
	add(3, nowhere)
	add(3, dst)

	var sent, failed int
	for rest := ms; len(rest) > 0; {
		n, err := s.WriteBatch(rest)
		sent += n
		if n == len(rest) {
			break
		}
		if !errors.Is(err, unix.EINVAL) || rest[n].Addr != nowhere {
			t.Fatalf("datagram %d (to %v) not sent: %v; want only those to port 0 refused with EINVAL", len(ms)-len(rest)+n, rest[n].Addr, err)
		}
		failed++
		rest = rest[n+1:]
	}
	if sent != 6 || failed != 3 {
		t.Fatalf("%d sent and %d failed, want 6 and 3", sent, failed)
	}
	if s.gsoBelow != size {
		t.Fatalf("runs below %d bytes still tried, want %d", s.gsoBelow, size)
	}
	buf := make([]byte, 2*size)
	for i, w := range want {
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := r.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: %d bytes of %d, want %d of %d", i, n, buf[0], len(w), w[0])
		}
	}
	r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := r.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("a datagram more: %d bytes of %d", n, buf[0])
	}
}
