package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

func mustRules(t testing.TB, ss ...string) []Rule {
	t.Helper()
	rs := make([]Rule, len(ss))
	for i, s := range ss {
		r, err := ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = r
	}
	return rs
}

// checkPolicy asserts that p allows or refuses ip:port, and that a refusal is
// a well-formed policy error.
func checkPolicy(t *testing.T, p *Policy, ip netip.Addr, port uint16, allow bool) {
	t.Helper()
	err := p.Check(ip, port)
	if allow {
		if err != nil {
			t.Errorf("Check(%s, %d) = %v, want allowed", ip, port, err)
		}
		return
	}
	if err == nil {
		t.Errorf("Check(%s, %d) allowed, want refused", ip, port)
		return
	}
	if got := wire.StatusOf(err); got != wire.StatusNotAllowed {
		t.Errorf("Check(%s, %d): StatusOf = %v, want %v", ip, port, got, wire.StatusNotAllowed)
	}
	if !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Check(%s, %d) = %v, does not wrap ErrNotAllowed", ip, port, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("Check(%s, %d): error %q is not one line", ip, port, err)
	}
}

func TestPolicyCheck(t *testing.T) {
	lab := &Policy{AllowPrivate: true}
	tests := []struct {
		name   string
		policy *Policy
		dst    string
		allow  bool
	}{
		// Refused by default.
		{"loopback", nil, "127.0.0.1:80", false},
		{"loopback top", nil, "127.255.255.254:80", false},
		{"loopback v6", nil, "[::1]:80", false},
		{"rfc1918 10", nil, "10.1.2.3:80", false},
		{"rfc1918 172 low", nil, "172.16.0.1:80", false},
		{"rfc1918 172 high", nil, "172.31.255.255:80", false},
		{"rfc1918 192", nil, "192.168.1.1:80", false},
		{"cgnat low", nil, "100.64.0.1:80", false},
		{"cgnat high", nil, "100.127.255.255:80", false},
		{"metadata", nil, "169.254.169.254:80", false},
		{"link-local v6", nil, "[fe80::1]:80", false},
		{"ula fc", nil, "[fc00::1]:80", false},
		{"ula fd", nil, "[fd12::1]:80", false},
		{"site-local", nil, "[fec0::1]:80", false},
		{"mapped loopback", nil, "[::ffff:127.0.0.1]:80", false},
		{"mapped private", nil, "[::ffff:10.0.0.1]:80", false},
		{"mapped metadata", nil, "[::ffff:169.254.169.254]:80", false},
		{"unspecified", nil, "0.0.0.0:80", false},
		{"this network", nil, "0.1.2.3:80", false},
		{"unspecified v6", nil, "[::]:80", false},
		{"mapped unspecified", nil, "[::ffff:0.0.0.0]:80", false},
		{"multicast", nil, "224.0.0.251:5353", false},
		{"multicast v6", nil, "[ff02::1]:80", false},
		{"broadcast", nil, "255.255.255.255:80", false},
		{"reserved", nil, "240.0.0.1:80", false},
		{"ipv4-compatible", nil, "[::1.1.1.1]:80", false},
		{"benchmarking", nil, "198.18.0.1:80", false},
		{"nat64 loopback", nil, "[64:ff9b::127.0.0.1]:80", false},
		{"nat64 private", nil, "[64:ff9b::10.0.0.1]:80", false},
		{"nat64 metadata", nil, "[64:ff9b::169.254.169.254]:80", false},
		{"nat64 multicast", nil, "[64:ff9b::224.0.0.1]:80", false},
		{"local nat64", nil, "[64:ff9b:1::a00:1]:80", false},
		{"smtp", nil, "1.1.1.1:25", false},
		{"smtp v6", nil, "[2606:4700::1111]:25", false},
		{"smtp mapped", nil, "[::ffff:1.1.1.1]:25", false},

		// Allowed by default.
		{"public", nil, "1.1.1.1:6881", true},
		{"public v6", nil, "[2606:4700::1111]:443", true},
		{"after 172.16/12", nil, "172.32.0.1:80", true},
		{"before 172.16/12", nil, "172.15.255.255:80", true},
		{"after cgnat", nil, "100.128.0.1:80", true},
		{"after 10/8", nil, "11.0.0.1:80", true},
		{"mapped public", nil, "[::ffff:1.1.1.1]:443", true},
		{"nat64 public", nil, "[64:ff9b::1.1.1.1]:443", true},
		{"port 0", nil, "1.1.1.1:0", true},
		{"port 26", nil, "1.1.1.1:26", true},
		{"zero policy", &Policy{}, "8.8.8.8:53", true},

		// AllowPrivate.
		{"lab loopback", lab, "127.0.0.1:80", true},
		{"lab loopback v6", lab, "[::1]:80", true},
		{"lab mapped loopback", lab, "[::ffff:127.0.0.1]:80", true},
		{"lab rfc1918", lab, "192.168.1.1:80", true},
		{"lab cgnat", lab, "100.64.0.1:80", true},
		{"lab link-local", lab, "169.254.1.1:80", true},
		{"lab link-local v6", lab, "[fe80::1]:80", true},
		{"lab ula", lab, "[fd12::1]:80", true},
		{"lab public", lab, "1.1.1.1:80", true},
		{"lab smtp", lab, "10.0.0.1:25", false},
		{"lab unspecified", lab, "0.0.0.0:80", false},
		{"lab unspecified v6", lab, "[::]:80", false},
		{"lab multicast", lab, "224.0.0.251:5353", false},
		{"lab multicast v6", lab, "[ff02::1]:80", false},
		{"lab broadcast", lab, "255.255.255.255:80", false},
		{"lab reserved", lab, "240.0.0.1:80", false},
		{"lab nat64 private", lab, "[64:ff9b::10.0.0.1]:80", false},

		// Rules.
		{"allow rule lifts private", &Policy{Rules: mustRules(t, "allow 10.200.0.0/16")}, "10.200.4.2:80", true},
		{"allow rule elsewhere", &Policy{Rules: mustRules(t, "allow 10.200.0.0/16")}, "10.1.1.1:80", false},
		{"allow rule lifts smtp", &Policy{Rules: mustRules(t, "allow 10.200.0.0/16")}, "10.200.4.2:25", true},
		{"allow rule wrong port", &Policy{Rules: mustRules(t, "allow 10.200.0.0/16 8080")}, "10.200.4.2:80", false},
		{"allow rule right port", &Policy{Rules: mustRules(t, "allow 10.200.0.0/16 8080")}, "10.200.4.2:8080", true},
		{"allow rule mapped", &Policy{Rules: mustRules(t, "allow 10.200.0.0/16")}, "[::ffff:10.200.4.2]:80", true},
		{"allow host", &Policy{Rules: mustRules(t, "allow 192.168.1.5")}, "192.168.1.5:80", true},
		{"allow host other", &Policy{Rules: mustRules(t, "allow 192.168.1.5")}, "192.168.1.6:80", false},
		{"allow ula", &Policy{Rules: mustRules(t, "allow fd00:1::/32")}, "[fd00:1::5]:80", true},
		{"allow reserved", &Policy{Rules: mustRules(t, "allow 240.0.0.0/8")}, "240.0.0.1:80", true},
		{"allow reserved not broadcast", &Policy{Rules: mustRules(t, "allow 240.0.0.0/4")}, "255.255.255.255:80", false},
		{"allow multicast never", &Policy{Rules: mustRules(t, "allow 224.0.0.0/4")}, "224.0.0.251:5353", false},
		{"allow unspecified never", &Policy{Rules: mustRules(t, "allow 0.0.0.0/8")}, "0.0.0.0:80", false},
		{"allow unspecified v6 never", &Policy{Rules: mustRules(t, "allow ::/128")}, "[::]:80", false},
		{"allow nat64", &Policy{Rules: mustRules(t, "allow 64:ff9b::/96")}, "[64:ff9b::10.0.0.1]:80", true},
		{"allow v4 no nat64", &Policy{Rules: mustRules(t, "allow 10.0.0.0/8")}, "[64:ff9b::10.0.0.1]:80", false},
		{"broad allow keeps loopback", &Policy{Rules: mustRules(t, "allow 0.0.0.0/0")}, "127.0.0.1:80", false},
		{"broad allow keeps lan", &Policy{Rules: mustRules(t, "allow 0.0.0.0/0 6881-6889")}, "192.168.1.1:6881", false},
		{"broad allow keeps lan v6", &Policy{Rules: mustRules(t, "allow ::/0")}, "[fd12::1]:80", false},
		{"broad allow smtp public", &Policy{Rules: mustRules(t, "allow 0.0.0.0/0 25")}, "1.1.1.1:25", true},
		{"broad allow smtp private", &Policy{Rules: mustRules(t, "allow 0.0.0.0/0 25")}, "10.0.0.1:25", false},
		{"broad allow with AllowPrivate", &Policy{AllowPrivate: true, Rules: mustRules(t, "allow 0.0.0.0/0 25")}, "10.0.0.1:25", true},
		{"deny public /24", &Policy{Rules: mustRules(t, "deny 203.0.113.0/24")}, "203.0.113.7:443", false},
		{"deny public /24 outside", &Policy{Rules: mustRules(t, "deny 203.0.113.0/24")}, "203.0.114.7:443", true},
		{"deny mapped", &Policy{Rules: mustRules(t, "deny 203.0.113.0/24")}, "[::ffff:203.0.113.7]:443", false},
		{"deny port range low", &Policy{Rules: mustRules(t, "deny 0.0.0.0/0 6881-6889")}, "1.1.1.1:6881", false},
		{"deny port range high", &Policy{Rules: mustRules(t, "deny 0.0.0.0/0 6881-6889")}, "1.1.1.1:6889", false},
		{"deny port range above", &Policy{Rules: mustRules(t, "deny 0.0.0.0/0 6881-6889")}, "1.1.1.1:6890", true},
		{"deny port range v6 untouched", &Policy{Rules: mustRules(t, "deny 0.0.0.0/0 6881-6889")}, "[2606:4700::1111]:6881", true},
		{"deny all v6", &Policy{Rules: mustRules(t, "deny ::/0 *")}, "[2606:4700::1111]:443", false},
		{"first match allow", &Policy{Rules: mustRules(t, "allow 203.0.113.7", "deny 203.0.113.0/24")}, "203.0.113.7:443", true},
		{"first match deny", &Policy{Rules: mustRules(t, "deny 203.0.113.0/24", "allow 203.0.113.7")}, "203.0.113.7:443", false},
		{"deny before lift", &Policy{AllowPrivate: true, Rules: mustRules(t, "deny 10.0.0.0/8")}, "10.0.0.1:80", false},

		// DenyPorts.
		{"no deny ports", &Policy{DenyPorts: []PortRange{}}, "1.1.1.1:25", true},
		{"custom deny ports", &Policy{DenyPorts: []PortRange{{6881, 6889}}}, "1.1.1.1:6885", false},
		{"custom deny ports frees smtp", &Policy{DenyPorts: []PortRange{{6881, 6889}}}, "1.1.1.1:25", true},
		{"deny ports all", &Policy{DenyPorts: []PortRange{{}}}, "1.1.1.1:443", false},
		{"deny ports lifted by rule", &Policy{DenyPorts: []PortRange{{}}, Rules: mustRules(t, "allow 0.0.0.0/0 443")}, "1.1.1.1:443", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tt.dst)
			checkPolicy(t, tt.policy, ap.Addr(), ap.Port(), tt.allow)
		})
	}
}

func TestPolicyCheckOddAddrs(t *testing.T) {
	lab := &Policy{AllowPrivate: true, Rules: mustRules(t, "allow ::/0", "allow 0.0.0.0/0")}
	for _, p := range []*Policy{nil, lab} {
		checkPolicy(t, p, netip.Addr{}, 80, false)
		checkPolicy(t, p, netip.MustParseAddr("fe80::1%eth0"), 80, false)
		checkPolicy(t, p, netip.MustParseAddr("2606:4700::1111%eth0"), 80, false)
	}
}

func TestPolicyCheckErrorMessage(t *testing.T) {
	err := (&Policy{}).Check(netip.MustParseAddr("::ffff:169.254.169.254"), 80)
	want := "not allowed by the exit's policy: not allowed by exit policy: 169.254.169.254:80 (link-local address)"
	if err == nil || err.Error() != want {
		t.Errorf("Check error = %v, want %q", err, want)
	}
	err = (&Policy{Rules: mustRules(t, "deny 203.0.113.0/24 443")}).Check(netip.MustParseAddr("203.0.113.1"), 443)
	if err == nil || !strings.Contains(err.Error(), "rule 1: deny 203.0.113.0/24 443") {
		t.Errorf("Check error = %v, want it to name the rule", err)
	}
}

func TestPolicyCheckAllocs(t *testing.T) {
	p := &Policy{Rules: mustRules(t, "deny 203.0.113.0/24", "allow 10.200.0.0/16", "deny 0.0.0.0/0 6881-6889")}
	for _, dst := range []string{"1.1.1.1:443", "[2606:4700::1111]:443", "[::ffff:1.1.1.1]:443", "10.200.1.1:80", "[64:ff9b::1.1.1.1]:80"} {
		ap := netip.MustParseAddrPort(dst)
		for _, pol := range []*Policy{nil, p} {
			if pol == nil && ap.Addr().IsPrivate() {
				continue
			}
			if err := pol.Check(ap.Addr(), ap.Port()); err != nil {
				t.Fatalf("Check(%s) = %v", dst, err)
			}
			if n := testing.AllocsPerRun(100, func() { _ = pol.Check(ap.Addr(), ap.Port()) }); n != 0 {
				t.Errorf("Check(%s) allocates %v times, want 0", dst, n)
			}
		}
	}
}

func BenchmarkPolicyCheck(b *testing.B) {
	p := &Policy{Rules: mustRules(b, "deny 203.0.113.0/24", "allow 10.200.0.0/16")}
	dsts := []netip.AddrPort{
		netip.MustParseAddrPort("1.1.1.1:6881"),
		netip.MustParseAddrPort("[2606:4700::1111]:443"),
		netip.MustParseAddrPort("[::ffff:8.8.8.8]:53"),
		netip.MustParseAddrPort("10.200.4.2:80"),
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d := dsts[i%len(dsts)]
		if err := p.Check(d.Addr(), d.Port()); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func TestParsePortRange(t *testing.T) {
	good := []struct {
		in   string
		want PortRange
		str  string
	}{
		{"", PortRange{}, "*"},
		{"*", PortRange{}, "*"},
		{" * ", PortRange{}, "*"},
		{"25", PortRange{25, 25}, "25"},
		{"025", PortRange{25, 25}, "25"},
		{"6881-6889", PortRange{6881, 6889}, "6881-6889"},
		{"80-80", PortRange{80, 80}, "80"},
		{"1-65535", PortRange{1, 65535}, "1-65535"},
		{"65535", PortRange{65535, 65535}, "65535"},
	}
	for _, tt := range good {
		got, err := ParsePortRange(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		if s := got.String(); s != tt.str {
			t.Errorf("%v.String() = %q, want %q", got, s, tt.str)
		}
		if back, err := ParsePortRange(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q: %v, %v", tt.in, back, err)
		}
	}
	for _, in := range []string{"0", "0-10", "65536", "-1", "x", "25-", "-25", "10-5", "1-2-3", "+25", "25 26", "**", "6881–6889"} {
		_, err := ParsePortRange(in)
		if err == nil {
			t.Errorf("ParsePortRange(%q) succeeded, want error", in)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "6881-6889") || strings.Contains(msg, "\n") {
			t.Errorf("ParsePortRange(%q) error %q does not show the expected form on one line", in, msg)
		}
	}
}

func TestPortRangeContains(t *testing.T) {
	tests := []struct {
		r    PortRange
		port uint16
		want bool
	}{
		{PortRange{}, 0, true},
		{PortRange{}, 65535, true},
		{PortRange{25, 25}, 25, true},
		{PortRange{25, 25}, 24, false},
		{PortRange{25, 25}, 26, false},
		{PortRange{6881, 6889}, 6881, true},
		{PortRange{6881, 6889}, 6889, true},
		{PortRange{6881, 6889}, 6880, false},
		{PortRange{6881, 6889}, 6890, false},
		{PortRange{10, 5}, 7, false},
	}
	for _, tt := range tests {
		if got := tt.r.Contains(tt.port); got != tt.want {
			t.Errorf("%v.Contains(%d) = %v, want %v", tt.r, tt.port, got, tt.want)
		}
	}
}

func TestParseRule(t *testing.T) {
	good := []struct {
		in   string
		want Rule
		str  string
	}{
		{"allow 10.0.0.0/8 6881-6889", Rule{true, netip.MustParsePrefix("10.0.0.0/8"), PortRange{6881, 6889}}, "allow 10.0.0.0/8 6881-6889"},
		{"deny 0.0.0.0/0 25", Rule{false, netip.MustParsePrefix("0.0.0.0/0"), PortRange{25, 25}}, "deny 0.0.0.0/0 25"},
		{"deny ::/0 *", Rule{false, netip.MustParsePrefix("::/0"), PortRange{}}, "deny ::/0"},
		{"allow 192.168.1.5", Rule{true, netip.MustParsePrefix("192.168.1.5/32"), PortRange{}}, "allow 192.168.1.5/32"},
		{"allow fd00::5", Rule{true, netip.MustParsePrefix("fd00::5/128"), PortRange{}}, "allow fd00::5/128"},
		{"  ALLOW\t10.1.2.3/16   443 ", Rule{true, netip.MustParsePrefix("10.1.0.0/16"), PortRange{443, 443}}, "allow 10.1.0.0/16 443"},
		{"Deny 2001:db8::/32 1-1024", Rule{false, netip.MustParsePrefix("2001:db8::/32"), PortRange{1, 1024}}, "deny 2001:db8::/32 1-1024"},
	}
	for _, tt := range good {
		got, err := ParseRule(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseRule(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		if s := got.String(); s != tt.str {
			t.Errorf("ParseRule(%q).String() = %q, want %q", tt.in, s, tt.str)
		}
		if back, err := ParseRule(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q: %v, %v", tt.in, back, err)
		}
	}
	bad := []struct{ in, says string }{
		{"", "0 words"},
		{"allow", "1 words"},
		{"allow 10.0.0.0/8 25 26", "4 words"},
		{"permit 10.0.0.0/8", `"permit" is neither allow nor deny`},
		{"allow 10.0.0.0/33", "not an IP prefix"},
		{"allow 10.0.0/8", "not an IP prefix"},
		{"allow example.com", "not an IP address"},
		{"allow fe80::1%eth0", "has a zone"},
		{"allow fe80::/10%eth0", "not an IP prefix"},
		{"allow ::ffff:10.0.0.0/104", "write the IPv4 prefix (10.0.0.0/8)"},
		{"allow ::ffff:10.0.0.1", "write the IPv4 prefix (10.0.0.1/32)"},
		{"allow 10.0.0.0/8 0", "port 0"},
		{"allow 10.0.0.0/8 70000", "not a port number"},
		{"allow 10.0.0.0/8 9-3", "greater than"},
		{"allow 10.0.0.0/8 http", "not a port number"},
	}
	for _, tt := range bad {
		_, err := ParseRule(tt.in)
		if err == nil {
			t.Errorf("ParseRule(%q) succeeded, want error", tt.in)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tt.says) || !strings.Contains(msg, "allow|deny <ip or prefix>") || strings.Contains(msg, "\n") {
			t.Errorf("ParseRule(%q) error %q: want one line saying %q and showing the expected form", tt.in, msg, tt.says)
		}
	}
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"allow 10.0.0.0/8 6881-6889", "deny 0.0.0.0/0 25", "deny ::/0 *", "allow 192.168.1.5",
		"allow fe80::1%eth0", "allow ::ffff:10.0.0.0/104", "deny 1.2.3.4/8 0-5", "allow  ::/0\t1-65535",
		"allow 10.0.0.0/8 9-3", "", "deny",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() || r.Prefix.Addr().Is4In6() {
			t.Fatalf("ParseRule(%q) = %v: prefix not valid, masked and unmapped", s, r)
		}
		back, err := ParseRule(r.String())
		if err != nil {
			t.Fatalf("ParseRule(%q).String() = %q does not parse: %v", s, r.String(), err)
		}
		if back != r {
			t.Fatalf("ParseRule(%q) = %+v, round trip via %q gives %+v", s, r, r.String(), back)
		}
		_ = (&Policy{Rules: []Rule{r}}).Check(netip.MustParseAddr("10.0.0.1"), 80)
	})
}
