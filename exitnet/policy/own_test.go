package policy

import (
	"net/netip"
	"strings"
	"testing"
)

// TestPolicyEmbeddedIPv4: IPv6 forms that carry an IPv4 address (6to4,
// Teredo with its server and client parts, IPv4-translated, NAT64) are
// judged by the IPv4 addresses they carry, and a refused one is not opened
// by AllowPrivate, only by a rule inside the form's range.
func TestPolicyEmbeddedIPv4(t *testing.T) {
	lab := &Policy{AllowPrivate: true}
	tests := []struct {
		name   string
		policy *Policy
		dst    string
		allow  bool
	}{
		{"6to4 loopback", nil, "[2002:7f00:1::1]:80", false},
		{"6to4 private", nil, "[2002:c0a8:101::1]:80", false},
		{"6to4 metadata", nil, "[2002:a9fe:a9fe::1]:80", false},
		{"6to4 multicast", nil, "[2002:e000:1::1]:80", false},
		{"6to4 public", nil, "[2002:101:101::1]:443", true},
		{"teredo server loopback", nil, "[2001:0:7f00:1::1]:80", false},
		{"teredo server private", nil, "[2001:0:a00:1::1]:80", false},
		// Client 127.0.0.1, inverted: 80ff:fffe.
		{"teredo client loopback", nil, "[2001:0:101:101:0:0:80ff:fffe]:80", false},
		// Client 10.0.0.1, inverted: f5ff:fffe.
		{"teredo client private", nil, "[2001:0:101:101:0:0:f5ff:fffe]:80", false},
		// Server 1.1.1.1, client 8.8.8.8 inverted: f7f7:f7f7.
		{"teredo public", nil, "[2001:0:101:101:0:0:f7f7:f7f7]:443", true},
		{"ipv4-translated loopback", nil, "[::ffff:0:7f00:1]:80", false},
		{"ipv4-translated private", nil, "[::ffff:0:a00:1]:80", false},
		{"ipv4-translated public", nil, "[::ffff:0:101:101]:443", true},
		{"nat64 loopback", nil, "[64:ff9b::7f00:1]:80", false},
		{"lab 6to4 loopback", lab, "[2002:7f00:1::1]:80", false},
		{"lab teredo client loopback", lab, "[2001:0:101:101:0:0:80ff:fffe]:80", false},
		{"lab ipv4-translated loopback", lab, "[::ffff:0:7f00:1]:80", false},
		{"rule inside 6to4", &Policy{Rules: mustRules(t, "allow 2002:a00::/24")}, "[2002:a00:1::1]:80", true},
		{"v4 rule does not open 6to4", &Policy{Rules: mustRules(t, "allow 10.0.0.0/8")}, "[2002:a00:1::1]:80", false},
		{"broad v6 rule does not open 6to4", &Policy{Rules: mustRules(t, "allow ::/0")}, "[2002:7f00:1::1]:80", false},
		{"not teredo", nil, "[2001:db8:7f00:1::1]:443", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tt.dst)
			checkPolicy(t, tt.policy, ap.Addr(), ap.Port(), tt.allow)
		})
	}
	err := (&Policy{}).Check(netip.MustParseAddr("2002:7f00:1::1"), 80)
	if err == nil || !strings.Contains(err.Error(), "6to4 form of loopback IPv4 address") {
		t.Errorf("6to4 refusal %v does not say why", err)
	}
}

// TestPolicyOwnAddrs: the exit's own addresses are refused, AllowPrivate
// or not, in IPv4-mapped and embedding forms too; loopback is left to
// AllowPrivate; a rule naming the address, or a port in OwnPorts, opens it.
func TestPolicyOwnAddrs(t *testing.T) {
	own := new(OwnAddrs)
	own.Store([]netip.Addr{netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("10.0.0.5"),
		netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::ffff:198.51.100.9")})
	with := func(p Policy) *Policy { p.Own = own; return &p }
	tests := []struct {
		name   string
		policy *Policy
		dst    string
		allow  bool
	}{
		{"own public", with(Policy{}), "203.0.113.5:22", false},
		{"own public mapped", with(Policy{}), "[::ffff:203.0.113.5]:22", false},
		{"own stored mapped", with(Policy{}), "198.51.100.9:22", false},
		{"own v6", with(Policy{}), "[2001:db8::5]:22", false},
		{"own in 6to4", with(Policy{}), "[2002:cb00:7105::1]:22", false},
		{"own in nat64", with(Policy{}), "[64:ff9b::203.0.113.5]:22", false},
		{"own lab", with(Policy{AllowPrivate: true}), "203.0.113.5:22", false},
		{"own private lab", with(Policy{AllowPrivate: true}), "10.0.0.5:22", false},
		{"own loopback lab", with(Policy{AllowPrivate: true}), "127.0.0.1:22", true},
		{"own loopback default", with(Policy{}), "127.0.0.1:22", false},
		{"neighbour", with(Policy{}), "203.0.113.6:22", true},
		{"neighbour lab", with(Policy{AllowPrivate: true}), "10.0.0.6:22", true},
		{"rule names it", with(Policy{Rules: mustRules(t, "allow 203.0.113.5 8080")}), "203.0.113.5:8080", true},
		{"rule names it other port", with(Policy{Rules: mustRules(t, "allow 203.0.113.5 8080")}), "203.0.113.5:22", false},
		{"broad rule does not", with(Policy{Rules: mustRules(t, "allow 0.0.0.0/0 6881-6889")}), "203.0.113.5:6881", false},
		{"network rule does not", with(Policy{AllowPrivate: true, Rules: mustRules(t, "allow 10.0.0.0/24")}), "10.0.0.5:80", false},
		{"deny first", with(Policy{Rules: mustRules(t, "deny 203.0.113.0/24", "allow 203.0.113.5")}), "203.0.113.5:80", false},
		{"forwarded port", with(Policy{OwnPorts: []PortRange{{40000, 40999}}}), "203.0.113.5:40000", true},
		{"beside the forwarded ports", with(Policy{OwnPorts: []PortRange{{40000, 40999}}}), "203.0.113.5:41000", false},
		{"forwarded port private still private", with(Policy{OwnPorts: []PortRange{{40000, 40999}}}), "10.0.0.5:40000", false},
		{"no own set", &Policy{}, "203.0.113.5:22", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tt.dst)
			checkPolicy(t, tt.policy, ap.Addr(), ap.Port(), tt.allow)
		})
	}
	if err := with(Policy{}).Check(netip.MustParseAddr("203.0.113.5"), 22); err == nil || !strings.Contains(err.Error(), "own address") {
		t.Errorf("refusal %v does not say why", err)
	}
	// The set changes while the policy is in use.
	p := with(Policy{})
	if own.Store([]netip.Addr{netip.MustParseAddr("203.0.113.6")}) != true {
		t.Error("Store of a new set reported no change")
	}
	if own.Store([]netip.Addr{netip.MustParseAddr("203.0.113.6")}) != false {
		t.Error("Store of the same set reported a change")
	}
	checkPolicy(t, p, netip.MustParseAddr("203.0.113.5"), 22, true)
	checkPolicy(t, p, netip.MustParseAddr("203.0.113.6"), 22, false)
	if n := testing.AllocsPerRun(100, func() { _ = p.Check(netip.MustParseAddr("2606:4700::1111"), 443) }); n != 0 {
		t.Errorf("Check with an own set allocates %v times, want 0", n)
	}
}

// TestPolicyOwnListeners: where the exit's own process listens is refused
// whatever AllowPrivate, a rule naming the address, or OwnPorts say: a
// listener on an unspecified address on loopback and on every own
// address, one on an address there only; other loopback ports, and the
// same port on another host, stay open to a lab.
func TestPolicyOwnListeners(t *testing.T) {
	own := new(OwnAddrs)
	own.Store([]netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("198.51.100.7")})
	own.StoreListeners([]netip.AddrPort{
		netip.MustParseAddrPort("0.0.0.0:7843"),   // the link, everywhere
		netip.MustParseAddrPort("127.0.0.1:9090"), // the status page, on loopback
		netip.MustParseAddrPort("[::]:6881"),      // the DHT socket, everywhere
		netip.AddrPortFrom(netip.Addr{}, 7000),    // no address: everywhere
		netip.MustParseAddrPort("127.0.0.1:0"),    // no port: nothing
		netip.MustParseAddrPort("[::ffff:127.0.0.1]:9090"),
		netip.MustParseAddrPort("0.0.0.0:5353"), // the mDNS responder, IPv4
		netip.MustParseAddrPort("[::]:5353"),    // and IPv6
	})
	lab := &Policy{AllowPrivate: true, Own: own}
	ruled := &Policy{AllowPrivate: true, Own: own, Rules: mustRules(t, "allow 198.51.100.7/32", "allow 127.0.0.1/32"),
		OwnPorts: []PortRange{{Lo: 7000, Hi: 9999}}}
	tests := []struct {
		name   string
		policy *Policy
		dst    string
		allow  bool
	}{
		{"page on loopback", lab, "127.0.0.1:9090", false},
		{"page mapped", lab, "[::ffff:127.0.0.1]:9090", false},
		{"page bound elsewhere", lab, "127.0.0.2:9090", true},
		{"link on another loopback address", lab, "127.0.0.2:7843", false},
		{"link on v6 loopback", lab, "[::1]:7843", false},
		{"link on own private address", lab, "10.1.2.3:7843", false},
		{"dht on own public address", lab, "198.51.100.7:6881", false},
		{"no address, loopback", lab, "127.0.0.1:7000", false},
		{"nat64 of loopback link", &Policy{Own: own, Rules: mustRules(t, "allow 64:ff9b::/96")}, "[64:ff9b::7f00:1]:7843", false},
		{"mdns on loopback", lab, "127.0.0.1:5353", false},
		{"mdns on v6 loopback", lab, "[::1]:5353", false},
		{"mdns mapped", lab, "[::ffff:127.0.0.1]:5353", false},
		{"mdns on own private address", lab, "10.1.2.3:5353", false},
		{"mdns on own public address", ruled, "198.51.100.7:5353", false},
		{"mdns at another LAN host", lab, "10.1.2.4:5353", true},
		{"loopback other port", lab, "127.0.0.1:9091", true},
		{"other host same port", lab, "10.1.2.4:7843", true},
		{"public host same port", lab, "203.0.113.5:7843", true},
		{"rules and own ports lift nothing", ruled, "127.0.0.1:9090", false},
		{"rule naming own address lifts nothing", ruled, "198.51.100.7:7843", false},
		{"rule naming own address other port", ruled, "198.51.100.7:8000", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tt.dst)
			checkPolicy(t, tt.policy, ap.Addr(), ap.Port(), tt.allow)
		})
	}
	if got := own.Listeners(); len(got) != 6 {
		t.Errorf("Listeners() = %v, want 6", got)
	}
	err := lab.Check(netip.MustParseAddr("127.0.0.1"), 9090)
	if err == nil || !strings.Contains(err.Error(), "listens on") {
		t.Errorf("refusal %v does not say why", err)
	}
}

// TestPolicyOwnBroadcasts: the directed broadcast addresses of the exit's
// own networks are refused on every port, by the default policy (a public
// network's too), with AllowPrivate, and whatever rules and OwnPorts say,
// also in an IPv6 form that embeds them; their neighbours are not.
func TestPolicyOwnBroadcasts(t *testing.T) {
	own := new(OwnAddrs)
	own.Store([]netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("93.184.216.34")})
	own.StoreBroadcasts([]netip.Addr{
		netip.MustParseAddr("10.1.2.255"),
		netip.MustParseAddr("::ffff:93.184.216.39"), // a public /29's
		netip.MustParseAddr("10.1.2.255"),
		netip.MustParseAddr("2001:db8::ff"), // not IPv4: left out
	})
	if got := own.Broadcasts(); len(got) != 2 {
		t.Errorf("Broadcasts() = %v, want 2", got)
	}
	strict := &Policy{Own: own}
	lab := &Policy{AllowPrivate: true, Own: own}
	ruled := &Policy{AllowPrivate: true, Own: own, OwnPorts: []PortRange{{}},
		Rules: mustRules(t, "allow 10.1.2.255/32", "allow 93.184.216.39/32", "allow 64:ff9b::/96")}
	tests := []struct {
		name   string
		policy *Policy
		dst    string
		allow  bool
	}{
		{"private network, lab", lab, "10.1.2.255:6881", false},
		{"private network, mapped", lab, "[::ffff:10.1.2.255]:5353", false},
		{"public network, default policy", strict, "93.184.216.39:6881", false},
		{"rules and own ports lift nothing", ruled, "10.1.2.255:7000", false},
		{"rule naming a public one", ruled, "93.184.216.39:7000", false},
		{"nat64 form", ruled, "[64:ff9b::5db8:d827]:6881", false},
		{"a neighbour on the LAN", lab, "10.1.2.254:6881", true},
		{"another network's last address", lab, "10.1.3.255:6881", true},
		{"a public neighbour", strict, "93.184.216.38:6881", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tt.dst)
			checkPolicy(t, tt.policy, ap.Addr(), ap.Port(), tt.allow)
		})
	}
	if err := lab.Check(netip.MustParseAddr("10.1.2.255"), 1); err == nil || !strings.Contains(err.Error(), "broadcast") {
		t.Errorf("refusal %v does not say why", err)
	}
}
