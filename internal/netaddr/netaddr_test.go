package netaddr

import (
	"net/netip"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		class  Class
		prefix string // "" for none
	}{
		{"", Invalid, ""},
		{"1.1.1.1", Public, ""},
		{"11.0.0.1", Public, ""},
		{"::ffff:1.1.1.1", Public, ""},
		{"2606:4700::1111", Public, ""},
		{"0.0.0.0", Unspecified, "0.0.0.0/8"},
		{"0.1.2.3", Unspecified, "0.0.0.0/8"},
		{"::", Unspecified, "::/128"},
		{"::ffff:0.0.0.0", Unspecified, "0.0.0.0/8"},
		{"224.0.0.251", Multicast, "224.0.0.0/4"},
		{"239.255.255.255", Multicast, "224.0.0.0/4"},
		{"ff02::1", Multicast, "ff00::/8"},
		{"255.255.255.255", Broadcast, "255.255.255.255/32"},
		{"255.255.255.254", Reserved, "240.0.0.0/4"},
		{"240.0.0.1", Reserved, "240.0.0.0/4"},
		{"127.0.0.1", Loopback, "127.0.0.0/8"},
		{"127.255.255.254", Loopback, "127.0.0.0/8"},
		{"::1", Loopback, "::1/128"},
		{"::ffff:127.0.0.1", Loopback, "127.0.0.0/8"},
		{"10.1.2.3", Private, "10.0.0.0/8"},
		{"172.15.255.255", Public, ""},
		{"172.16.0.1", Private, "172.16.0.0/12"},
		{"172.31.255.255", Private, "172.16.0.0/12"},
		{"172.32.0.1", Public, ""},
		{"192.168.1.1", Private, "192.168.0.0/16"},
		{"::ffff:192.168.1.1", Private, "192.168.0.0/16"},
		{"100.63.255.255", Public, ""},
		{"100.64.0.1", CGNAT, "100.64.0.0/10"},
		{"100.127.255.255", CGNAT, "100.64.0.0/10"},
		{"100.128.0.1", Public, ""},
		{"169.254.169.254", LinkLocal, "169.254.0.0/16"},
		{"fe80::1", LinkLocal, "fe80::/10"},
		{"fe80::1%eth0", LinkLocal, "fe80::/10"},
		{"192.0.0.9", ProtocolAssignments, "192.0.0.0/24"},
		{"198.18.0.1", Benchmarking, "198.18.0.0/15"},
		{"198.19.255.255", Benchmarking, "198.18.0.0/15"},
		{"198.20.0.1", Public, ""},
		{"192.0.2.1", Documentation, "192.0.2.0/24"},
		{"198.51.100.7", Documentation, "198.51.100.0/24"},
		{"203.0.113.9", Documentation, "203.0.113.0/24"},
		{"203.0.114.9", Public, ""},
		{"2001:db8::7", Documentation, "2001:db8::/32"},
		{"2001:db9::1", Public, ""},
		{"::1.1.1.1", IPv4Compatible, "::/96"},
		{"fec0::1", SiteLocal, "fec0::/10"},
		{"fc00::1", UniqueLocal, "fc00::/7"},
		{"fd12::1", UniqueLocal, "fc00::/7"},
		{"64:ff9b:1::a00:1", LocalNAT64, "64:ff9b:1::/48"},
		{"64:ff9b::10.0.0.1", Public, ""}, // embedded forms are the caller's to judge
		{"2002:a00:1::1", Public, ""},
	} {
		var a netip.Addr
		if tc.addr != "" {
			a = netip.MustParseAddr(tc.addr)
		}
		var want netip.Prefix
		if tc.prefix != "" {
			want = netip.MustParsePrefix(tc.prefix)
		}
		c, p := Classify(a)
		if c != tc.class || p != want {
			t.Errorf("Classify(%s) = %v, %v; want %v, %v", tc.addr, c, p, tc.class, want)
		}
		if got := IsPublic(a); got != (tc.class == Public) {
			t.Errorf("IsPublic(%s) = %v", tc.addr, got)
		}
	}
}

func TestClassLocal(t *testing.T) {
	local := map[Class]bool{Loopback: true, Private: true, CGNAT: true, LinkLocal: true, ProtocolAssignments: true,
		Benchmarking: true, Documentation: true, SiteLocal: true, UniqueLocal: true, LocalNAT64: true}
	for c := Public; c <= LocalNAT64; c++ {
		if c.Local() != local[c] {
			t.Errorf("%v.Local() = %v", c, c.Local())
		}
		if c.String() == "" || c.String() == "unknown" {
			t.Errorf("class %d has no name", c)
		}
	}
	if s := (LocalNAT64 + 1).String(); s != "unknown" {
		t.Errorf("String of an unknown class = %q", s)
	}
}

func TestClassifyAllocs(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("::ffff:10.0.0.1"),
		netip.MustParseAddr("2606:4700::1111"), netip.MustParseAddr("fe80::1%eth0")}
	if n := testing.AllocsPerRun(100, func() {
		for _, a := range addrs {
			Classify(a)
		}
	}); n != 0 {
		t.Errorf("Classify allocates %v times", n)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add([]byte{100, 64, 0, 1})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		c, p := Classify(a)
		u := a.Unmap()
		if c == Public && (p.IsValid() || u.IsPrivate() || u.IsLoopback() || u.IsLinkLocalUnicast() ||
			u.IsMulticast() || u.IsUnspecified() || !u.IsGlobalUnicast()) {
			t.Fatalf("%v called public", a)
		}
		if c != Public && !p.Contains(u) {
			t.Fatalf("Classify(%v) = %v, %v: the range does not hold it", a, c, p)
		}
	})
}
