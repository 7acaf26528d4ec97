package testnet

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
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
