package netaddr

import "net/netip"

// Class is the special-purpose range an address lies in; the zero value,
// Public, means none.
type Class uint8

const (
	Public              Class = iota // in no special-purpose range
	Invalid                          // the zero netip.Addr
	Unspecified                      // 0.0.0.0/8 ("this network"), ::/128
	Multicast                        // 224.0.0.0/4, ff00::/8
	Broadcast                        // 255.255.255.255/32
	Loopback                         // 127.0.0.0/8, ::1/128
	Private                          // RFC 1918: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16
	CGNAT                            // shared address space, 100.64.0.0/10 (RFC 6598)
	LinkLocal                        // 169.254.0.0/16, fe80::/10
	ProtocolAssignments              // IETF protocol assignments, 192.0.0.0/24
	Benchmarking                     // 198.18.0.0/15 (also used by fake-IP DNS resolvers)
	Documentation                    // 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32
	Reserved                         // 240.0.0.0/4 (future use)
	IPv4Compatible                   // deprecated IPv4-compatible IPv6, ::/96
	SiteLocal                        // deprecated site-local, fec0::/10
	UniqueLocal                      // ULA, fc00::/7
	LocalNAT64                       // local-use NAT64, 64:ff9b:1::/48 (RFC 8215)
)

var classNames = [...]string{
	Public:              "public",
	Invalid:             "invalid",
	Unspecified:         "unspecified",
	Multicast:           "multicast",
	Broadcast:           "broadcast",
	Loopback:            "loopback",
	Private:             "private",
	CGNAT:               "carrier-grade NAT",
	LinkLocal:           "link-local",
	ProtocolAssignments: "IETF protocol assignments",
	Benchmarking:        "benchmarking",
	Documentation:       "documentation",
	Reserved:            "reserved",
	IPv4Compatible:      "IPv4-compatible",
	SiteLocal:           "site-local",
	UniqueLocal:         "unique local",
	LocalNAT64:          "local-use NAT64",
}

// String is the class in the words a user reads ("carrier-grade NAT").
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

// Local reports whether c is a range that a host, a LAN or a lab uses for
// itself: loopback, private, carrier-grade NAT, link-local, IETF protocol
// assignments, benchmarking, documentation, site-local, unique local and
// local-use NAT64. A caller's "allow private" switch admits these; it
// never admits the others that are not Public (invalid, unspecified,
// multicast, broadcast, reserved, IPv4-compatible).
func (c Class) Local() bool {
	switch c {
	case Loopback, Private, CGNAT, LinkLocal, ProtocolAssignments, Benchmarking,
		Documentation, SiteLocal, UniqueLocal, LocalNAT64:
		return true
	}
	return false
}

type special struct {
	prefix netip.Prefix
	class  Class
}

func specials(class Class, prefixes ...string) []special {
	s := make([]special, len(prefixes))
	for i, p := range prefixes {
		s[i] = special{netip.MustParsePrefix(p), class}
	}
	return s
}

// v4 and v6 are the special-purpose ranges; no two overlap except where
// the first match is meant (::/128 and ::1/128 before ::/96).
var (
	v4 = concat(
		specials(Unspecified, "0.0.0.0/8"),
		specials(Multicast, "224.0.0.0/4"),
		specials(Broadcast, "255.255.255.255/32"),
		specials(Loopback, "127.0.0.0/8"),
		specials(Private, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
		specials(CGNAT, "100.64.0.0/10"),
		specials(LinkLocal, "169.254.0.0/16"),
		specials(ProtocolAssignments, "192.0.0.0/24"),
		specials(Benchmarking, "198.18.0.0/15"),
		specials(Documentation, "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"),
		specials(Reserved, "240.0.0.0/4"),
	)
	v6 = concat(
		specials(Unspecified, "::/128"),
		specials(Multicast, "ff00::/8"),
		specials(Loopback, "::1/128"),
		specials(LinkLocal, "fe80::/10"),
		specials(SiteLocal, "fec0::/10"),
		specials(UniqueLocal, "fc00::/7"),
		specials(LocalNAT64, "64:ff9b:1::/48"),
		specials(Documentation, "2001:db8::/32"),
		specials(IPv4Compatible, "::/96"),
	)
)

func concat(lists ...[]special) []special {
	var all []special
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}

// Classify returns the class of a and the special-purpose range it lies in
// (the zero Prefix for Public and Invalid). An IPv4-mapped IPv6 address is
// classified as the IPv4 address it carries, and a zone is ignored. IPv6
// forms that embed an IPv4 address elsewhere (NAT64, 6to4, Teredo) are
// classified as IPv6 addresses: a caller that may reach the embedded
// address judges it itself. Classify does not allocate.
func Classify(a netip.Addr) (Class, netip.Prefix) {
	if !a.IsValid() {
		return Invalid, netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	ranges := v6
	if a.Is4() {
		ranges = v4
	}
	for i := range ranges {
		if ranges[i].prefix.Contains(a) {
			return ranges[i].class, ranges[i].prefix
		}
	}
	return Public, netip.Prefix{}
}

// IsPublic reports whether a lies in no special-purpose range: an address
// the internet routes to.
func IsPublic(a netip.Addr) bool {
	c, _ := Classify(a)
	return c == Public
}
