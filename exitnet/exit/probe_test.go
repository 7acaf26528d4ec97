package exit

import (
	"net/netip"
	"testing"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// TestProbeDestinationHole: the exit's default policy refuses loopback (and
// its own addresses, which it keeps in the policy), and the only datagram a
// client may send past it is one to the socket of its own running probe, on
// 127.0.0.1 at that socket's port: not another port, not another loopback
// address, not while no probe runs, not another client's probe.
func TestProbeDestinationHole(t *testing.T) {
	for _, pol := range []*policy.Policy{nil, {DenyPorts: []policy.PortRange{}}} {
		e, err := New(Config{Link: link.Config{Identity: newIdentity(t)}, Policy: pol})
		if err != nil {
			t.Fatal(err)
		}
		if e.policy.Own == nil {
			t.Fatal("the exit keeps no own addresses in its policy")
		}
		const probePort = 40555
		c, other := &client{}, &client{}
		c.udpProbe.Store(probePort)
		for _, tc := range []struct {
			name string
			c    *client
			dst  wire.Addr
			want bool
		}{
			{"own probe", c, wire.Addr{IP: loopback4, Port: probePort}, true},
			{"own probe, mapped", c, wire.Addr{IP: netip.MustParseAddr("::ffff:127.0.0.1"), Port: probePort}, true},
			{"another port", c, wire.Addr{IP: loopback4, Port: probePort + 1}, false},
			{"another loopback", c, wire.Addr{IP: netip.MustParseAddr("127.0.0.2"), Port: probePort}, false},
			{"ipv6 loopback", c, wire.Addr{IP: netip.IPv6Loopback(), Port: probePort}, false},
			{"by name", c, wire.Addr{Name: "localhost", Port: probePort}, false},
			{"another client's probe", other, wire.Addr{IP: loopback4, Port: probePort}, false},
		} {
			ip, ok := tc.c.probeDestination(tc.dst)
			if ok != tc.want || ok && ip != loopback4 {
				t.Errorf("%s: probeDestination(%v) = %v, %v; want %v", tc.name, tc.dst, ip, ok, tc.want)
			}
			// Past the bypass, the policy decides, and refuses loopback.
			if !ok && tc.dst.IP.IsValid() {
				if _, allowed := e.udpDestination(t.Context(), tc.dst); allowed {
					t.Errorf("%s: the policy lets a datagram to %v through", tc.name, tc.dst)
				}
			}
		}
		c.udpProbe.Store(0)
		if _, ok := c.probeDestination(wire.Addr{IP: loopback4, Port: probePort}); ok {
			t.Error("a datagram to a finished probe's port passes")
		}
	}
}
