package mainline

import (
	"net"
	"net/netip"

	"github.com/anacrolix/torrent/iplist"

	"github.com/swarmvpn/swarmvpn/internal/netaddr"
)

// dropReason says why an address was not accepted ("" when it was).
type dropReason string

const (
	dropInvalid   dropReason = "invalid"
	dropForbidden dropReason = "forbidden"
)

// checkAddr reports whether ap is an acceptable remote address (a DHT node or a candidate exit):
// a public one, or with allowPrivate one in a local range (loopback, private, CGNAT, link-local,
// ULA and the other ranges of netaddr.Class.Local). Unspecified, multicast, broadcast and reserved
// addresses are refused even then.
func checkAddr(ap netip.AddrPort, allowPrivate bool) dropReason {
	a := ap.Addr().Unmap()
	if !a.IsValid() || ap.Port() == 0 || a.Zone() != "" {
		return dropInvalid
	}
	if c, _ := netaddr.Classify(a); c != netaddr.Public && !(allowPrivate && c.Local()) {
		return dropForbidden
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

// NumRanges is informational (the DHT server never asks): the blocklist is one rule, the
// classification of internal/netaddr.
func (b *blocklist) NumRanges() int { return 1 }
