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
	set   atomic.Pointer[map[netip.Addr]struct{}]
	ports atomic.Pointer[map[uint16]struct{}] // see StorePorts
}

// StorePorts replaces the set of ports the exit's own process listens on
// (its link listener, its DHT socket, its status page, its metrics):
// Policy.Check refuses them on loopback and on the exit's own addresses,
// whatever else allows them. Port 0 is left out.
func (o *OwnAddrs) StorePorts(ports []uint16) {
	m := make(map[uint16]struct{}, len(ports))
	for _, p := range ports {
		if p != 0 {
			m[p] = struct{}{}
		}
	}
	o.ports.Store(&m)
}

// Listening reports whether port is one StorePorts stored. It does not
// allocate.
func (o *OwnAddrs) Listening(port uint16) bool {
	m := o.ports.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[port]
	return ok
}

// Ports returns the ports StorePorts stored, sorted.
func (o *OwnAddrs) Ports() []uint16 {
	m := o.ports.Load()
	if m == nil {
		return nil
	}
	out := make([]uint16, 0, len(*m))
	for p := range *m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
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
