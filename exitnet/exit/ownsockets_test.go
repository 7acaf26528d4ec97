package exit

import (
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/nstest"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// mdnsQU is an mDNS query for the exits' service type that asks for a
// unicast answer (RFC 6762 5.4), as a client of the exit could send to the
// exit's own responder.
func mdnsQU() []byte {
	q := []byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0} // one question
	for _, l := range []string{"_swarmvpn", "_tcp", "local"} {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	return append(q, 0, 0, 12, 0x80, 1) // PTR, IN with the QU bit
}

// TestSecurityOwnMDNS: a lab exit (AllowPrivate) that answers mDNS refuses
// TCP flows and UDP datagrams to its responder's port, on IPv4 and IPv6
// loopback, counting them as policy refusals, while the responder does
// answer a query sent there directly (the control) and another loopback
// port stays open.
//
// It runs in a network namespace of its own with multicast on loopback, as
// the discovery tests do, so the responder reaches nothing else.
func TestSecurityOwnMDNS(t *testing.T) {
	if !nstest.Isolated(t, "link set lo up", "link set lo multicast on", "route add 224.0.0.0/4 dev lo") {
		return
	}
	echo := udpEcho(t, "udp4", "127.0.0.1:0")
	exit := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}, MDNS: true})
	link := netip.MustParseAddrPort(exit.addr.Addr)
	waitFor(t, "the link listener among the exit's own", func() bool { return slices.Contains(exit.exit.own.Listeners(), link) })
	for _, l := range discovery.ResponderAddrs() {
		if !slices.Contains(exit.exit.own.Listeners(), l) {
			t.Errorf("own listeners %v lack the mDNS responder's %v", exit.exit.own.Listeners(), l)
		}
	}

	// The control: the exit's responder answers a unicast query on
	// loopback, once it has started.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	responder := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: discovery.MDNSPort}
	answered := false
	for range 100 {
		if _, err := c.WriteToUDP(mdnsQU(), responder); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := c.ReadFromUDP(make([]byte, 9000)); err == nil {
			answered = true
			break
		}
	}
	if !answered {
		t.Fatal("control: the exit's mDNS responder does not answer on loopback")
	}

	pl := startPool(t, exit.addr)
	port := strconv.Itoa(discovery.MDNSPort)
	refused := []string{"127.0.0.1:" + port, "[::1]:" + port, "[::ffff:127.0.0.1]:" + port}
	for _, dst := range refused {
		c, err := pl.DialContext(t.Context(), "tcp", dst)
		if err == nil {
			c.Close()
			t.Fatalf("flow to the exit's mDNS port %s was carried", dst)
		}
		if wire.StatusOf(err) != wire.StatusNotAllowed {
			t.Fatalf("flow to %s: %v, want not allowed (SOCKS reply 2)", dst, err)
		}
	}
	if n := exit.exit.Stats().PolicyRefusals; n != uint64(len(refused)) {
		t.Fatalf("policy refusals %d, want %d", n, len(refused))
	}

	a := associate(t, pl)
	for _, ip := range []string{"127.0.0.1", "::1"} {
		a.WriteTo(mdnsQU(), wire.Addr{IP: netip.MustParseAddr(ip), Port: discovery.MDNSPort})
	}
	a.WriteTo([]byte("allowed"), wire.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: udpAddrOf(echo).Port()})
	// The echo is the one datagram expected back; the drop count says the
	// queries never left the exit.
	if got, _ := readDatagram(t, a); string(got) != "allowed" {
		t.Fatalf("the client got %q, want only the echo", got)
	}
	if st := exit.exit.Stats().UDP; st.DropPolicy != 2 {
		t.Fatalf("UDP policy drops %d, want 2", st.DropPolicy)
	}
}

// TestSecurityOwnBroadcast: a lab exit refuses datagrams to the directed
// broadcast address of its own network, which would reach every host
// there and, looped back, its own sockets bound to an unspecified address
// (the control shows a socket on 0.0.0.0 receives one); an ordinary
// loopback port stays open. It runs in a network namespace of its own,
// with a veth pair for a LAN.
func TestSecurityOwnBroadcast(t *testing.T) {
	if !nstest.Isolated(t, "link set lo up", "link add swv0 type veth peer name swv1",
		"addr add 10.9.9.1/24 brd + dev swv0", "link set swv0 up", "link set swv1 up") {
		return
	}
	bcast := netip.MustParseAddr("10.9.9.255")
	trap, err := net.ListenUDP("udp4", &net.UDPAddr{}) // as the exit's DHT socket on 0.0.0.0
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trap.Close() })
	to := netip.AddrPortFrom(bcast, udpAddrOf(trap).Port())
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	buf := make([]byte, 64)
	if _, err := c.WriteToUDPAddrPort([]byte("control"), to); err != nil {
		t.Fatalf("control: %v", err)
	}
	trap.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := trap.ReadFromUDP(buf); err != nil || string(buf[:n]) != "control" {
		t.Fatalf("control: a socket on 0.0.0.0 did not receive a datagram to %v: %q %v", bcast, buf[:n], err)
	}

	echo := udpEcho(t, "udp4", "127.0.0.1:0")
	exit := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}})
	waitFor(t, "the broadcast address among the exit's own", func() bool {
		return slices.Contains(exit.exit.own.Broadcasts(), bcast)
	})
	pl := startPool(t, exit.addr)
	if c, err := pl.DialContext(t.Context(), "tcp", to.String()); err == nil || wire.StatusOf(err) != wire.StatusNotAllowed {
		if c != nil {
			c.Close()
		}
		t.Fatalf("flow to %v: %v, want not allowed (SOCKS reply 2)", to, err)
	}
	a := associate(t, pl)
	a.WriteTo([]byte("must not arrive"), wire.Addr{IP: bcast, Port: to.Port()})
	a.WriteTo([]byte("allowed"), wire.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: udpAddrOf(echo).Port()})
	if got, _ := readDatagram(t, a); string(got) != "allowed" {
		t.Fatalf("echo %q", got)
	}
	// Local delivery is synchronous: a datagram sent before the allowed
	// one would be waiting in the trap now.
	trap.SetReadDeadline(time.Now())
	if n, _, err := trap.ReadFromUDP(buf); err == nil {
		t.Fatalf("a datagram (%d bytes) to the broadcast address reached a socket of the exit's host", n)
	}
	if st := exit.exit.Stats().UDP; st.DropPolicy != 1 {
		t.Fatalf("UDP policy drops %d, want 1", st.DropPolicy)
	}

	// A network that appears while the exit runs: its broadcast address is
	// refused once the exit re-reads its addresses (within ownRefresh),
	// and one that goes is no longer.
	if out, err := exec.Command("ip", "addr", "add", "10.9.8.1/24", "brd", "+", "dev", "swv0").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v\n%s", err, out)
	}
	later := netip.MustParseAddr("10.9.8.255")
	waitFor(t, "a later network's broadcast address among the exit's own", func() bool {
		return slices.Contains(exit.exit.own.Broadcasts(), later)
	})
	a.WriteTo([]byte("must not arrive"), wire.Addr{IP: later, Port: to.Port()})
	a.WriteTo([]byte("allowed"), wire.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: udpAddrOf(echo).Port()})
	if got, _ := readDatagram(t, a); string(got) != "allowed" {
		t.Fatalf("echo %q", got)
	}
	trap.SetReadDeadline(time.Now())
	if n, _, err := trap.ReadFromUDP(buf); err == nil {
		t.Fatalf("a datagram (%d bytes) to a later network's broadcast address reached a socket of the exit's host", n)
	}
	if st := exit.exit.Stats().UDP; st.DropPolicy != 2 {
		t.Fatalf("UDP policy drops %d, want 2", st.DropPolicy)
	}
	if out, err := exec.Command("ip", "addr", "del", "10.9.9.1/24", "dev", "swv0").CombinedOutput(); err != nil {
		t.Fatalf("ip addr del: %v\n%s", err, out)
	}
	waitFor(t, "a removed network's broadcast address gone from the exit's own", func() bool {
		return !slices.Contains(exit.exit.own.Broadcasts(), bcast)
	})
}

func TestBroadcastOf(t *testing.T) {
	for _, tt := range []struct{ prefix, want string }{
		{"10.1.2.3/24", "10.1.2.255"},
		{"192.168.1.77/16", "192.168.255.255"},
		{"93.184.216.34/29", "93.184.216.39"},
		{"100.64.0.1/30", "100.64.0.3"},
		{"127.0.0.1/8", "127.255.255.255"},
		{"10.0.0.1/31", ""},
		{"10.0.0.1/32", ""},
		{"2001:db8::1/64", ""},
	} {
		got, ok := broadcastOf(netip.MustParsePrefix(tt.prefix))
		if ok != (tt.want != "") || ok && got.String() != tt.want {
			t.Errorf("broadcastOf(%s) = %v, %v; want %q", tt.prefix, got, ok, tt.want)
		}
	}
}
