package testnet

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/socks"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

// TestIsolationForwardedPort: a second client of the same exit that asks
// for the first client's forwarded port gets another one, and connections
// to the first client's port reach only the first client's application.
func TestIsolationForwardedPort(t *testing.T) {
	var seenA, seenB atomic.Int64
	appA := StartTarget(t, "127.0.0.1:0", func(c net.Conn) { seenA.Add(1); io.WriteString(c, "A") })
	appB := StartTarget(t, "127.0.0.1:0", func(c net.Conn) { seenB.Add(1); io.WriteString(c, "B") })
	tp := Start(t, Options{ForwardPorts: forwardRange(), ForwardTarget: appA.Addr})
	portA := waitPort(t, tp.Ports)

	portsB := make(chan uint16, 4)
	idB, _ := link.NewIdentity()
	runPool(t, pool.Config{Link: link.Config{Identity: idB}, Exits: []link.ExitAddr{tp.ExitAddr},
		Forward: true, ForwardPort: portA, OnPort: func(p uint16) { portsB <- p },
		Inbound: portfwd.Target{Addr: appB.Addr}.Dial})
	portB := waitPort(t, portsB)
	if portB == portA {
		t.Fatalf("the second client was lent the first client's port %d", portA)
	}

	for _, tc := range []struct {
		port uint16
		want string
	}{{portA, "A"}, {portB, "B"}, {portA, "A"}} {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(int(tc.port)))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != tc.want {
			t.Fatalf("peer on port %d reached %q (%v), want client %s's application", tc.port, got, err, tc.want)
		}
	}
	if a, b := seenA.Load(), seenB.Load(); a != 2 || b != 1 {
		t.Fatalf("applications saw A=%d B=%d connections, want 2 and 1", a, b)
	}
}

// TestIsolationUDPRelay: datagrams sent to one client's SOCKS5 relay
// socket from any other socket, on its address or another, never leave
// through that client's association, and nothing comes back to its
// application because of them.
func TestIsolationUDPRelay(t *testing.T) {
	tp := Start(t, Options{})
	echo, _ := udpEcho(t)
	echoAddr := echo.LocalAddr().(*net.UDPAddr).AddrPort()
	trap, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trap.Close() })
	trapAddr := trap.LocalAddr().(*net.UDPAddr).AddrPort()

	a, err := SOCKS5Associate(t.Context(), tp.SOCKS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	// A's application speaks first, which fixes its port at the relay.
	if err := a.Send(echoAddr.String(), []byte("A1")); err != nil {
		t.Fatal(err)
	}
	if got, src, err := a.Receive(10 * time.Second); err != nil || string(got) != "A1" || src != echoAddr {
		t.Fatalf("A's echo: %q from %v (%v)", got, src, err)
	}

	// Another application on the same address, and one on another
	// loopback address, write to A's relay socket.
	var strangers []*net.UDPConn
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)} {
		s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
		if err != nil {
			t.Logf("no socket on %s: %v", ip, err)
			continue
		}
		t.Cleanup(func() { s.Close() })
		strangers = append(strangers, s)
		for _, dst := range []netip.AddrPort{trapAddr, echoAddr} {
			d, err := socks.AppendDatagram(nil, dst.String(), []byte("from B"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.WriteToUDPAddrPort(d, a.Relay); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A round trip of A's after them: the relay reads its socket in order,
	// so had any stranger's datagram been carried it would be at the trap
	// (or its echo at A) before this one's echo.
	if err := a.Send(echoAddr.String(), []byte("A2")); err != nil {
		t.Fatal(err)
	}
	if got, src, err := a.Receive(10 * time.Second); err != nil || string(got) != "A2" || src != echoAddr {
		t.Fatalf("A received %q from %v (%v), want only its own echo A2", got, src, err)
	}
	trap.SetReadDeadline(time.Now())
	buf := make([]byte, 64)
	if n, from, err := trap.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("a stranger's datagram left through A's association: %q from %v", buf[:n], from)
	}
	for _, s := range strangers {
		s.SetReadDeadline(time.Now())
		if n, from, err := s.ReadFromUDPAddrPort(buf); err == nil {
			t.Fatalf("a stranger got %q from %v", buf[:n], from)
		}
	}
	a.Conn.SetReadDeadline(time.Now())
	if n, from, err := a.Conn.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("A received an extra %q from %v", buf[:n], from)
	}
	// Counters are bumped after the send returns, so the echo can beat them.
	WaitFor(t, "A's two datagrams counted", func() bool { return tp.Exit.Stats().UDP.DatagramsOut >= 2 })
	if st := tp.Exit.Stats().UDP; st.DatagramsOut != 2 {
		t.Fatalf("the exit sent %d datagrams for A, want its 2", st.DatagramsOut)
	}
}
