package exit

import (
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/nstest"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// TestSecurityOwnAddress: the exit refuses CONNECT and UDP to an address
// of its own interfaces that is not private, where a service listens, by
// address and by name, under the default policy and with AllowPrivate; an
// address added while it runs is refused within a few seconds, and its
// public address (Config.Addrs) too. Loopback stays open to a lab exit.
//
// It runs in a network namespace of its own, whose one interface carries
// the public-looking addresses.
func TestSecurityOwnAddress(t *testing.T) {
	if !nstest.Isolated(t, "link set lo up", "addr add 198.51.100.7/32 dev lo", "addr add 2001:db8::7/128 dev lo") {
		return
	}
	own := []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")}
	names := map[string]netip.Addr{"own4.test": own[0], "own6.test": own[1], "late.test": netip.MustParseAddr("198.51.100.8")}
	fd := startFakeDNS(t, names)

	// A service on every address of the host, as one bound to 0.0.0.0.
	tg := startTarget(t, "tcp", "[::]:0", []byte("the exit host's own service"))
	port, _ := strconv.Atoi(tg.port())
	trap, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trap.Close() })
	for _, ip := range own { // the control: the service answers there
		c, err := net.Dial("tcp", netip.AddrPortFrom(ip, uint16(port)).String())
		if err != nil {
			t.Fatalf("control: %s: %v", ip, err)
		}
		c.Close()
	}
	waitFor(t, "the control connections", func() bool { return tg.accepted.Load() == int64(len(own)) })

	for _, tc := range []struct {
		name string
		pol  *policy.Policy
	}{{"default", nil}, {"allow-private", &policy.Policy{AllowPrivate: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			before := tg.accepted.Load()
			exit := serveExit(t, Config{Policy: tc.pol, Resolver: fd.resolver(), Addrs: []string{"203.0.113.9:7843"}})
			pl := startPool(t, exit.addr)
			refused := func(host string) {
				t.Helper()
				c, err := pl.DialContext(t.Context(), "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
				if err == nil {
					c.Close()
					t.Errorf("%s: the exit connected to its own address", host)
					return
				}
				if st := wire.StatusOf(err); st != wire.StatusNotAllowed {
					t.Errorf("%s: %v (status %v), want not allowed", host, err, st)
				}
			}
			for _, h := range []string{"198.51.100.7", "2001:db8::7", "::ffff:198.51.100.7", "2002:c633:6407::1", "own4.test", "own6.test",
				"203.0.113.9"} {
				refused(h)
			}
			if tc.pol != nil { // a lab exit still reaches loopback
				roundTrip(t, pl, "127.0.0.1:"+tg.port(), []byte("lab"), []byte("the exit host's own service"))
				before++
			}

			a := associate(t, pl)
			dsts := []wire.Addr{{IP: own[0], Port: uint16(port)}, {IP: own[1], Port: uint16(port)}, {Name: "own4.test", Port: uint16(port)}}
			for _, d := range dsts {
				if err := a.WriteTo([]byte("must not reach the exit host"), d); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the datagrams judged", func() bool { return exit.exit.Stats().UDP.DropPolicy >= uint64(len(dsts)) })
			if st := exit.exit.Stats().UDP; st.DatagramsOut != 0 {
				t.Errorf("the exit sent %d datagrams to its own addresses", st.DatagramsOut)
			}
			trap.SetReadDeadline(time.Now())
			buf := make([]byte, 64)
			if n, from, err := trap.ReadFromUDPAddrPort(buf); err == nil {
				t.Errorf("the host's UDP socket received %q from %v", buf[:n], from)
			}

			// An address added while the exit runs.
			out, err := exec.Command("ip", "addr", "add", "198.51.100.8/32", "dev", "lo").CombinedOutput()
			if err != nil {
				t.Fatalf("ip addr add: %v %s", err, out)
			}
			t.Cleanup(func() { exec.Command("ip", "addr", "del", "198.51.100.8/32", "dev", "lo").Run() })
			waitFor(t, "the new address refused", func() bool {
				return exit.exit.own.Contains(netip.MustParseAddr("198.51.100.8"))
			})
			refused("198.51.100.8")
			refused("late.test")
			if n := tg.accepted.Load() - before; n != 0 {
				t.Errorf("the host's own service accepted %d connections through the exit", n)
			}
		})
	}
}
