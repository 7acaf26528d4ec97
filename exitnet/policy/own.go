package policy

import (
	"net/netip"
	"slices"
	"sync/atomic"
)

// OwnAddrs is the set of an exit's own addresses, for Policy.Own: the
// addresses of its interfaces, its public address, the external address a
// NAT maps for it. The exit replaces the set as its interfaces change,
// while Check reads it. The zero value is empty and ready to use; it is
// safe for concurrent use.
type OwnAddrs struct {
	set atomic.Pointer[map[netip.Addr]struct{}]
}

// Store replaces the set with addrs, unmapped and without zones; invalid
// and unspecified addresses are left out. It reports whether the set
// changed.
func (o *OwnAddrs) Store(addrs []netip.Addr) bool {
	m := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if a.IsValid() && !a.IsUnspecified() {
			m[a] = struct{}{}
		}
	}
	if old := o.set.Load(); old != nil && len(*old) == len(m) {
		same := true
		for a := range m {
			if _, ok := (*old)[a]; !ok {
				same = false
				break
			}
		}
		if same {
			return false
		}
	}
	o.set.Store(&m)
	return true
}

// Contains reports whether ip, unmapped, is in the set. It does not
// allocate.
func (o *OwnAddrs) Contains(ip netip.Addr) bool {
	m := o.set.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[ip.Unmap().WithZone("")]
	return ok
}

// Addrs returns the addresses in the set, sorted.
func (o *OwnAddrs) Addrs() []netip.Addr {
	m := o.set.Load()
	if m == nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(*m))
	for a := range *m {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
