package udpbatch

import (
	"net"
	"testing"
)

// TestQueueProbe: the probe sees a receiver's queue grow by what is sent
// to it and not read, and reports its buffer; a port nobody holds is
// ErrNoSocket.
func TestQueueProbe(t *testing.T) {
	p, err := NewQueueProbe()
	if err != nil {
		t.Skipf("no sock_diag here: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recv.Close() })
	if err := recv.SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { send.Close() })
	src := send.LocalAddr().(*net.UDPAddr).AddrPort()
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()

	q0, limit, err := p.Queue(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if q0 != 0 || limit < 64<<10 {
		t.Fatalf("empty socket: queued %d, limit %d; want 0 and at least %d", q0, limit, 64<<10)
	}
	for range 10 {
		if _, err := send.WriteToUDPAddrPort(make([]byte, 1000), dst); err != nil {
			t.Fatal(err)
		}
	}
	q1, _, err := p.Queue(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if q1 < 10*1000 {
		t.Fatalf("after 10 datagrams of 1000 B: queued %d, want at least 10000", q1)
	}
	buf := make([]byte, 2000)
	for range 10 {
		if _, err := recv.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if q2, _, err := p.Queue(src, dst); err != nil || q2 != 0 {
		t.Fatalf("after reading all: queued %d, %v; want 0", q2, err)
	}
	recv.Close()
	if _, _, err := p.Queue(src, dst); err != ErrNoSocket {
		t.Fatalf("closed receiver: %v, want ErrNoSocket", err)
	}
}

// parseDiagReply never panics, whatever the kernel's reply holds.
func FuzzParseDiagReply(f *testing.F) {
	f.Add([]byte{}, uint32(1))
	f.Add(make([]byte, 16+72+12), uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, seq uint32) {
		parseDiagReply(b, seq)
	})
}
