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
	// listeners are the addresses the exit's process listens on, by
	// port; see StoreListeners.
	listeners atomic.Pointer[map[uint16][]netip.Addr]
	// broadcasts are the directed broadcast addresses of the exit's
	// IPv4 networks; see StoreBroadcasts.
	broadcasts atomic.Pointer[[]netip.Addr]
}

// StoreBroadcasts replaces the directed broadcast addresses of the exit's
// own IPv4 networks (10.1.2.255 for an interface at 10.1.2.3/24): a
// datagram to one reaches every host of that network and, looped back,
// the exit's own sockets bound to an unspecified address (its DHT socket,
// its mDNS responder). Policy.Check refuses them whatever else allows
// them. Addresses are unmapped and zoneless; others than IPv4 are left
// out.
func (o *OwnAddrs) StoreBroadcasts(addrs []netip.Addr) {
	var bs []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap().WithZone(""); a.Is4() && !slices.Contains(bs, a) {
			bs = append(bs, a)
		}
	}
	slices.SortFunc(bs, netip.Addr.Compare)
	o.broadcasts.Store(&bs)
}

// Broadcasts returns the addresses StoreBroadcasts stored, sorted.
func (o *OwnAddrs) Broadcasts() []netip.Addr {
	bs := o.broadcasts.Load()
	if bs == nil {
		return nil
	}
	return slices.Clone(*bs)
}

// broadcast reports whether ip, unmapped and zoneless, is one of the
// stored broadcast addresses. It does not allocate.
func (o *OwnAddrs) broadcast(ip netip.Addr) bool {
	bs := o.broadcasts.Load()
	return bs != nil && slices.Contains(*bs, ip)
}

// StoreListeners replaces the addresses the exit's own process listens or
// receives on (its link listener, its DHT socket, its mDNS responder, its
// status page, its metrics):
// Policy.Check refuses them whatever else allows them. A listener on an
// unspecified address (or none) answers on loopback and on every address
// of the exit, and is refused there; one on an address, there. Port 0 is
// left out.
func (o *OwnAddrs) StoreListeners(ls []netip.AddrPort) {
	m := make(map[uint16][]netip.Addr, len(ls))
	for _, l := range ls {
		a := l.Addr().Unmap().WithZone("")
		if !a.IsValid() {
			a = netip.IPv6Unspecified()
		}
		if l.Port() != 0 && !slices.Contains(m[l.Port()], a) {
			m[l.Port()] = append(m[l.Port()], a)
		}
	}
	o.listeners.Store(&m)
}

// Listeners returns the addresses StoreListeners stored, sorted.
func (o *OwnAddrs) Listeners() []netip.AddrPort {
	m := o.listeners.Load()
	if m == nil {
		return nil
	}
	var out []netip.AddrPort
	for port, as := range *m {
		for _, a := range as {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}

// listens reports whether a listener of the exit's own process answers at
// ip:port, ip unmapped and zoneless. It does not allocate.
func (o *OwnAddrs) listens(ip netip.Addr, port uint16) bool {
	m := o.listeners.Load()
	if m == nil {
		return false
	}
	for _, a := range (*m)[port] {
		if a == ip || a.IsUnspecified() && (ip.IsLoopback() || o.Contains(ip)) {
			return true
		}
	}
	return false
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
