package testnet

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/udpbatch"
)

// udpEcho answers every datagram and reports each sender on seen.
func udpEcho(t *testing.T) (*net.UDPConn, chan netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan netip.AddrPort, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case seen <- from:
			default:
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c, seen
}

func TestUDPWholePath(t *testing.T) {
	tp := Start(t, Options{})
	echo, seen := udpEcho(t)
	echoAddr := echo.LocalAddr().(*net.UDPAddr).AddrPort()
	u, err := SOCKS5Associate(t.Context(), tp.SOCKS)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()

	for _, dst := range []string{echoAddr.String(), "localhost:" + itoa(echoAddr.Port())} {
		for _, size := range []int{100, 1400} {
			payload := randBytes(size)
			if err := u.Send(dst, payload); err != nil {
				t.Fatal(err)
			}
			got, src, err := u.Receive(10 * time.Second)
			if err != nil {
				t.Fatalf("%s: %v", dst, err)
			}
			if !bytes.Equal(got, payload) || src != echoAddr {
				t.Fatalf("%s: %d bytes from %v, want %d identical from %v", dst, len(got), src, size, echoAddr)
			}
		}
	}

	// The echo server saw the exit's socket; a stranger who writes to that
	// address reaches the application, as an incoming uTP peer would.
	exitSide := <-seen
	stranger, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer stranger.Close()
	stranger.WriteToUDPAddrPort([]byte("incoming"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), exitSide.Port()))
	got, src, err := u.Receive(10 * time.Second)
	if err != nil || string(got) != "incoming" || src != stranger.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("unsolicited datagram: %q from %v (%v)", got, src, err)
	}

	// Closing the control connection releases the exit's socket.
	if tp.Exit.Stats().UDP.Active != 1 {
		t.Fatalf("exit holds %d associations, want 1", tp.Exit.Stats().UDP.Active)
	}
	u.Close()
	WaitFor(t, "the exit to release the association", func() bool { return tp.Exit.Stats().UDP.Active == 0 })
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}

// Bursts from the internet larger than the application's receive buffer,
// to an application that reads in spurts, reach it whole and in order: the
// client holds what the application's socket cannot take (its pacer), on
// the link's receive loop and off it, rather than letting the kernel drop
// it.
func TestUDPPacedBursts(t *testing.T) {
	if p, err := udpbatch.NewQueueProbe(); err != nil {
		t.Skipf("no sock_diag here: %v", err)
	} else {
		p.Close()
	}
	tp := Start(t, Options{})
	echo, seen := udpEcho(t)
	u, err := SOCKS5Associate(t.Context(), tp.SOCKS)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.Conn.SetReadBuffer(32 << 10); err != nil {
		t.Fatal(err)
	}
	// One echo tells the application's port to the client and the exit's
	// to the test.
	if err := u.Send(echo.LocalAddr().String(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.Receive(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	exitSide := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), (<-seen).Port())

	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	const bursts, per, size = 40, 40, 1200 // 48 kB a burst, into 32 KiB
	got := make(chan []uint32, 1)
	go func() {
		var nums []uint32
		for len(nums) < bursts*per {
			p, _, err := u.Receive(5 * time.Second)
			if err != nil {
				break
			}
			if len(p) != size {
				t.Errorf("datagram of %d bytes, want %d", len(p), size)
			}
			nums = append(nums, binary.BigEndian.Uint32(p))
			if len(nums)%16 == 0 {
				time.Sleep(2 * time.Millisecond) // busy with other work
			}
		}
		got <- nums
	}()
	buf := make([]byte, size)
	for b := range bursts {
		for i := range per {
			binary.BigEndian.PutUint32(buf, uint32(b*per+i))
			if _, err := peer.WriteToUDPAddrPort(buf, exitSide); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(15 * time.Millisecond)
	}
	nums := <-got
	for i, v := range nums {
		if v != uint32(i) {
			t.Fatalf("datagram %d is number %d: lost or out of order (%d received)", i, v, len(nums))
		}
	}
	if len(nums) != bursts*per {
		t.Fatalf("received %d of %d datagrams", len(nums), bursts*per)
	}
}
