package nat

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/swarmvpn/swarmvpn/internal/netaddr"
)

// ErrDoubleNAT means the gateway's own external address is not a public
// one: another NAT (often the ISP's carrier-grade NAT) sits between it and
// the internet, and no mapping on this gateway makes the exit reachable.
var ErrDoubleNAT = errors.New("double NAT")

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
	if c, _ := netaddr.Classify(a); c != netaddr.Public {
		return fmt.Errorf("%w: the router's external address %v is not public (%s), so another NAT is in front of it; %s",
			ErrDoubleNAT, a, c, doubleNATAdvice)
	}
	return nil
}
