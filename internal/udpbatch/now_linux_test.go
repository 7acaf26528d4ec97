package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/nstest"
)

// WriteBatchNow on a socket whose send buffer is full fails at once with
// EAGAIN, where WriteBatch would wait. The buffer fills behind a link of
// 1 Mbit/s (a token bucket on a veth, in a namespace of the test's own).
func TestWriteBatchNowFullBuffer(t *testing.T) {
	if !nstest.SlowLink(t, "1mbit") {
		return
	}
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nstest.SlowLocal, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetWriteBuffer(64 << 10)
	bc, err := New(c, 32)
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.AddrPortFrom(nstest.SlowNeighbour, 9)
	ms := make([]Message, 32)
	for i := range ms {
		// Sizes differ, so that each datagram is a header of its own.
		ms[i] = Message{Buf: make([]byte, 1000+i), Addr: dst}
	}
	start := time.Now()
	sent := 0
	for range 100 {
		n, err := bc.WriteBatchNow(ms)
		sent += n
		if err != nil {
			if !errors.Is(err, syscall.EAGAIN) {
				t.Fatalf("after %d datagrams: %v, want EAGAIN", sent, err)
			}
			if n == len(ms) {
				t.Fatalf("all %d sent, and an error", n)
			}
			t.Logf("EAGAIN after %d datagrams, %v", sent, time.Since(start))
			return
		}
	}
	t.Fatalf("%d datagrams sent through a 64 KiB send buffer at 1 Mbit/s and none refused", sent)
}
