package proxy

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/udpbatch"
)

// pacedPair is a sender with a batch writer and a receiver with a small
// receive buffer, both on loopback.
func pacedPair(t *testing.T) (send *net.UDPConn, bc *udpbatch.Conn, recv *net.UDPConn) {
	t.Helper()
	if p, err := udpbatch.NewQueueProbe(); err != nil {
		t.Skipf("no sock_diag here: %v", err)
	} else {
		p.Close()
	}
	recv = listenUDP(t, "127.0.0.1:0")
	if err := recv.SetReadBuffer(32 << 10); err != nil {
		t.Fatal(err)
	}
	send = listenUDP(t, "127.0.0.1:0")
	bc, err := udpbatch.New(send, relayBatch)
	if err != nil {
		t.Fatal(err)
	}
	return send, bc, recv
}

// A burst far larger than the client's receive buffer, to a client that
// reads slower than it arrives, reaches it whole and in order when paced,
// each datagram its own (none merged or split).
func TestPacerNoLossToSlowReader(t *testing.T) {
	send, bc, recv := pacedPair(t)
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	const batches, per, size = 40, relayBatch, 1200 // 1.5 MB into 64 KB
	got := make(chan []uint32, 1)
	go func() {
		var seen []uint32
		buf := make([]byte, 2*size)
		for len(seen) < batches*per {
			recv.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := recv.Read(buf)
			if err != nil {
				break
			}
			if n != size {
				t.Errorf("datagram of %d bytes, want %d", n, size)
			}
			seen = append(seen, binary.BigEndian.Uint32(buf))
			if len(seen)%8 == 0 {
				// a slow client: it reads a little, then does other work
				time.Sleep(time.Millisecond)
			}
		}
		got <- seen
	}()
	var p pacer
	defer p.close()
	ms := make([]udpbatch.Message, per)
	for b := range batches {
		for i := range ms {
			buf := make([]byte, size)
			binary.BigEndian.PutUint32(buf, uint32(b*per+i))
			ms[i] = udpbatch.Message{Buf: buf, N: size, Addr: dst}
		}
		p.wait(t.Context(), send, ms)
		if n, err := bc.WriteBatch(ms); n != len(ms) || err != nil {
			t.Fatalf("batch %d: wrote %d of %d: %v", b, n, len(ms), err)
		}
	}
	seen := <-got
	if len(seen) != batches*per {
		t.Fatalf("received %d of %d datagrams", len(seen), batches*per)
	}
	for i, v := range seen {
		if v != uint32(i) {
			t.Fatalf("datagram %d is number %d: out of order", i, v)
		}
	}
}

// A client that never reads holds a batch back at most paceMax; a
// destination with no socket, or not on this host, not at all.
func TestPacerBounded(t *testing.T) {
	send, bc, recv := pacedPair(t)
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	ms := make([]udpbatch.Message, relayBatch)
	for i := range ms {
		ms[i] = udpbatch.Message{Buf: make([]byte, 1200), N: 1200, Addr: dst}
	}
	var p pacer
	defer p.close()
	for range 3 { // fill the receiver's buffer
		p.wait(t.Context(), send, ms)
		bc.WriteBatch(ms)
	}
	start := time.Now()
	p.wait(t.Context(), send, ms)
	if d := time.Since(start); d < paceMax/2 || d > 20*paceMax {
		t.Fatalf("held a batch for a full socket %v, want about %v", d, paceMax)
	}

	nobody := listenUDP(t, "127.0.0.1:0")
	gone := nobody.LocalAddr().(*net.UDPAddr).AddrPort()
	nobody.Close()
	for _, to := range []netip.AddrPort{gone, netip.MustParseAddrPort("192.0.2.1:9")} {
		for i := range ms {
			ms[i].Addr = to
		}
		start := time.Now()
		p.wait(t.Context(), send, ms)
		if d := time.Since(start); d > paceMax/2 {
			t.Fatalf("held a batch for %v for %v, want no wait", to, d)
		}
	}
}
