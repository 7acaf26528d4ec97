package nat

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrDoubleNAT means the gateway's own external address is not a public
// one: another NAT (often the ISP's carrier-grade NAT) sits between it and
// the internet, and no mapping on this gateway makes the exit reachable.
var ErrDoubleNAT = errors.New("double NAT")

// notPublic lists the IPv4 ranges that are never a router's public address,
// with the words a user reads.
var notPublic = []struct {
	p    netip.Prefix
	what string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved"},
	{netip.MustParsePrefix("192.0.2.0/24"), "reserved (documentation)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "reserved (benchmarking)"},
	{netip.MustParsePrefix("198.51.100.0/24"), "reserved (documentation)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "reserved (documentation)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
}

// doubleNATAdvice is what a user can do about ErrDoubleNAT.
const doubleNATAdvice = "nothing on the internet can reach a port this router maps; " +
	"ask the ISP for a public IPv4 address, use IPv6, or run the exit on another network"

// checkExternal returns nil if a is a public IPv4 address, and an error
// wrapping ErrDoubleNAT that says why not otherwise.
func checkExternal(a netip.Addr) error {
	if !a.IsValid() {
		return fmt.Errorf("%w: the router reports no external address (routers hide it when it is not a public one); %s", ErrDoubleNAT, doubleNATAdvice)
	}
	a = a.Unmap()
	if !a.Is4() {
		return fmt.Errorf("%w: the router reports %v, not an IPv4 address; %s", ErrDoubleNAT, a, doubleNATAdvice)
	}
	for _, r := range notPublic {
		if r.p.Contains(a) {
			return fmt.Errorf("%w: the router's external address %v is %s, so another NAT is in front of it; %s",
				ErrDoubleNAT, a, r.what, doubleNATAdvice)
		}
	}
	return nil
}
