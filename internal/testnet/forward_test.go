package testnet

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

// forwardRange picks a range of ports for a test exit to lend; ports that
// happen to be busy are skipped by the leases.
func forwardRange() *portfwd.LeasesConfig {
	lo := uint16(42000 + rand.N(15000))
	return &portfwd.LeasesConfig{Lo: lo, Hi: lo + 31}
}

func waitPort(t *testing.T, ports <-chan uint16) uint16 {
	t.Helper()
	select {
	case p := <-ports:
		if p == 0 {
			t.Fatal("announced port 0")
		}
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no forwarded port announced within 10s")
	}
	return 0
}

func TestForwardTCPAndUDP(t *testing.T) {
	type conn struct {
		from netip.Addr
		sum  [32]byte
	}
	got := make(chan conn, 1)
	reply := randBytes(1 << 20)
	app := StartTarget(t, "127.0.0.1:0", func(c net.Conn) {
		h := sha256.New()
		io.Copy(h, c)
		c.Write(reply)
		var s [32]byte
		copy(s[:], h.Sum(nil))
		got <- conn{c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(), s}
	})
	fr := forwardRange()
	tp := Start(t, Options{ForwardPorts: fr, ForwardTarget: app.Addr})
	port := waitPort(t, tp.Ports)
	if port < fr.Lo || port > fr.Hi {
		t.Fatalf("forwarded port %d outside %d-%d", port, fr.Lo, fr.Hi)
	}
	if st := tp.Pool.Status(); st.ForwardedPort != port {
		t.Fatalf("status shows port %d, announced %d", st.ForwardedPort, port)
	}

	// A peer on the internet connects to the exit's forwarded port.
	up := randBytes(2 << 20)
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(int(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() { c.Write(up); c.(*net.TCPConn).CloseWrite() }()
	down, err := io.ReadAll(c)
	if err != nil || sha256.Sum256(down) != sha256.Sum256(reply) {
		t.Fatalf("peer received %d bytes (%v), want the app's %d", len(down), err, len(reply))
	}
	select {
	case g := <-got:
		if g.sum != sha256.Sum256(up) {
			t.Fatal("the app received other bytes than the peer sent")
		}
		if want := portfwd.LoopbackFor(netip.MustParseAddr("127.0.0.1")); g.from != want {
			t.Fatalf("app saw the peer as %v, want %v", g.from, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the app never finished the connection")
	}
	// Both ends count the inbound flow and its bytes once it has ended.
	WaitFor(t, "the inbound flow counted at both ends", func() bool {
		return tp.Exit.Stats().FlowsOpen == 1 && tp.Pool.Stats().FlowsOpen == 0 // the forward stays open
	})
	if s := tp.Exit.Stats(); s.Flows.Inbound != 1 || s.Flows.Forward != 1 ||
		s.BytesIn != uint64(len(up)) || s.BytesOut != uint64(len(reply)) {
		t.Errorf("exit stats %+v: want 1 forward, 1 inbound flow of %d bytes in, %d out", s, len(up), len(reply))
	}
	if s := tp.Pool.Stats(); s.Flows.Inbound != 1 || s.InboundBytesIn != uint64(len(up)) || s.InboundBytesOut != uint64(len(reply)) {
		t.Errorf("pl stats %+v: want 1 inbound flow of %d bytes in, %d out", s, len(up), len(reply))
	}

	// UDP: the client's association is bound on the forwarded port, so a
	// peer's datagram to exit:port reaches the application.
	u, err := SOCKS5Associate(t.Context(), tp.SOCKS)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	peer, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer peer.Close()
	// The application speaks first (as libtorrent does, to DHT and
	// trackers), which tells the relay its port; the peer sees it come from
	// the forwarded port.
	if err := u.Send(peer.LocalAddr().String(), []byte("dht ping")); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "dht ping" || from.Port() != port {
		t.Fatalf("peer got %q from %v (%v), want it from the forwarded port %d", buf[:n], from, err, port)
	}
	peer.WriteToUDPAddrPort([]byte("utp syn"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	b, src, err := u.Receive(10 * time.Second)
	if err != nil || string(b) != "utp syn" || src != peer.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("datagram to the forwarded port: %q from %v (%v)", b, src, err)
	}

	// The exit restarts: the client reconnects and gets the same port.
	tp.StopExit()
	tp.StartExit(tp.ExitAddr.Addr)
	if again := waitPort(t, tp.Ports); again != port {
		t.Fatalf("after the exit restarted the client got port %d, want its port %d", again, port)
	}
}

func TestForwardSecondClientAndPortlessExit(t *testing.T) {
	app := StartTarget(t, "127.0.0.1:0", Echo)
	tp := Start(t, Options{ForwardPorts: forwardRange(), ForwardTarget: app.Addr})
	first := waitPort(t, tp.Ports)
	second := make(chan uint16, 1)
	startPool(t, tp.ExitAddr, func(p uint16) { second <- p })
	if p := waitPort(t, second); p == first {
		t.Fatalf("two clients share port %d", p)
	}

	// An exit without forwarding: the link works, no port is announced.
	plain := Start(t, Options{})
	ports := make(chan uint16, 1)
	pl := startPool(t, plain.ExitAddr, func(p uint16) { ports <- p })
	c, err := pl.DialContext(t.Context(), "tcp", app.Addr)
	if err != nil {
		t.Fatalf("flows through a port-less exit: %v", err)
	}
	c.Close()
	if st := pl.Status(); st.ForwardedPort != 0 {
		t.Fatalf("port-less exit: status shows port %d", st.ForwardedPort)
	}
	select {
	case p := <-ports:
		t.Fatalf("port-less exit announced port %d", p)
	default:
	}
}

// startPool runs an extra client that asks for a forward.
func startPool(t *testing.T, exit link.ExitAddr, onPort func(uint16)) *pool.Pool {
	t.Helper()
	id, _ := link.NewIdentity()
	p, err := pool.New(pool.Config{Link: link.Config{Identity: id}, Exits: []link.ExitAddr{exit}, Forward: true,
		OnPort: onPort, DialWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}
