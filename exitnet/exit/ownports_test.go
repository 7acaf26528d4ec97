package exit

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// TestSecurityOwnListeners: a lab exit (AllowPrivate) refuses TCP flows
// and UDP datagrams to where its own process listens (a status page given
// in Listeners, its link listener) on loopback, counting them as policy
// refusals, while another loopback port stays open to it.
func TestSecurityOwnListeners(t *testing.T) {
	page := startTarget(t, "tcp4", "127.0.0.1:0", []byte("the exit's own status page"))
	pagePort, _ := strconv.Atoi(page.port())
	// A UDP socket on the page's port: a datagram to it must not arrive.
	trap, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: pagePort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trap.Close() })
	other := startTarget(t, "tcp4", "127.0.0.1:0", []byte("another service"))
	echo := udpEcho(t, "udp4", "127.0.0.1:0")

	exit := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}, Listeners: []netip.AddrPort{page.ln.Addr().(*net.TCPAddr).AddrPort()}})
	_, linkPort, _ := net.SplitHostPort(exit.addr.Addr)
	pl := startPool(t, exit.addr)

	refused := []string{
		"127.0.0.1:" + page.port(),
		"[::ffff:127.0.0.1]:" + page.port(),
		"localhost:" + page.port(),
		"127.0.0.1:" + linkPort,
	}
	for _, dst := range refused {
		c, err := pl.DialContext(t.Context(), "tcp", dst)
		if err == nil {
			c.Close()
			t.Fatalf("flow to the exit's own listener %s was carried", dst)
		}
		if wire.StatusOf(err) != wire.StatusNotAllowed {
			t.Fatalf("flow to %s: %v, want not allowed (SOCKS reply 2)", dst, err)
		}
	}
	if n := page.accepted.Load(); n != 0 {
		t.Fatalf("the exit's page saw %d connections", n)
	}
	if n := exit.exit.Stats().PolicyRefusals; n != uint64(len(refused)) {
		t.Fatalf("policy refusals %d, want %d", n, len(refused))
	}
	roundTrip(t, pl, "127.0.0.1:"+other.port(), []byte("ping"), []byte("another service"))

	a := associate(t, pl)
	lo := netip.MustParseAddr("127.0.0.1")
	a.WriteTo([]byte("must not arrive"), wire.Addr{IP: lo, Port: uint16(pagePort)})
	a.WriteTo([]byte("allowed"), wire.Addr{IP: lo, Port: udpAddrOf(echo).Port()})
	if got, _ := readDatagram(t, a); string(got) != "allowed" {
		t.Fatalf("echo %q", got)
	}
	// Loopback delivery is synchronous: a datagram sent before the allowed
	// one would be waiting in the trap now.
	trap.SetReadDeadline(time.Now())
	if n, _, err := trap.ReadFromUDP(make([]byte, 64)); err == nil {
		t.Fatalf("a datagram (%d bytes) reached the exit's own listener port", n)
	}
	if st := exit.exit.Stats().UDP; st.DropPolicy != 1 {
		t.Fatalf("UDP policy drops %d, want 1", st.DropPolicy)
	}
}
