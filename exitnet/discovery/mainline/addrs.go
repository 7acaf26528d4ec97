package mainline

import (
	"net"
	"net/netip"

	"github.com/anacrolix/torrent/iplist"
)

// forbiddenPrefixes are ranges no DHT-learned node or candidate may be at unless
// Config.AllowPrivate: loopback, private, CGNAT, link-local, ULA, multicast, benchmarking,
// documentation, "this network", reserved and broadcast.
var forbiddenPrefixes = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32",
		"64:ff9b:1::/48",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// alwaysForbidden are the ranges refused even with AllowPrivate (which admits loopback, private,
// CGNAT, link-local and ULA): unspecified, multicast and reserved.
var alwaysForbidden = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{"0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "::/128", "ff00::/8"} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// dropReason says why an address was not accepted ("" when it was).
type dropReason string

const (
	dropInvalid   dropReason = "invalid"
	dropForbidden dropReason = "forbidden"
)

// checkAddr reports whether ap is an acceptable remote address (a DHT node or a candidate exit).
func checkAddr(ap netip.AddrPort, allowPrivate bool) dropReason {
	a := ap.Addr().Unmap()
	if !a.IsValid() || ap.Port() == 0 || a.Zone() != "" {
		return dropInvalid
	}
	if a.Is4() && a.As4() == [4]byte{255, 255, 255, 255} {
		return dropForbidden
	}
	list := forbiddenPrefixes
	if allowPrivate {
		list = alwaysForbidden
	}
	for _, p := range list {
		if p.Contains(a) {
			return dropForbidden
		}
	}
	return ""
}

// netKey is the network a candidate is counted in for the Sybil cap: its /24 for IPv4, its /48
// for IPv6.
func netKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// blocklist is the DHT server's IP blocklist: it drops packets to and from forbidden addresses,
// except the configured bootstrap addresses. It is consulted for every packet, so it allocates
// nothing on the accept path.
type blocklist struct {
	allowPrivate bool
	allowed      map[netip.Addr]bool // explicit bootstrap addresses
}

var _ iplist.Ranger = (*blocklist)(nil)

func (b *blocklist) Lookup(ip net.IP) (iplist.Range, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return iplist.Range{First: ip, Last: ip, Description: "invalid address"}, true
	}
	a = a.Unmap()
	if b.allowed[a] {
		return iplist.Range{}, false
	}
	// Port 1 stands for "any port": only the address matters here.
	if r := checkAddr(netip.AddrPortFrom(a, 1), b.allowPrivate); r != "" {
		return iplist.Range{First: ip, Last: ip, Description: string(r)}, true
	}
	return iplist.Range{}, false
}

func (b *blocklist) NumRanges() int { return len(forbiddenPrefixes) }
