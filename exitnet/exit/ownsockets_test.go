package exit

import (
	"net"
	"net/netip"
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
