package exit

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
)

// ownRefresh is how often the exit re-reads its interfaces' addresses, so
// that an address added while it runs is refused within this long; one
// read is one netlink dump. Names among Config.Addrs are resolved again
// every ownResolve.
const (
	ownRefresh = 3 * time.Second
	ownResolve = time.Minute
)

// ownAddrs keeps the policy's set of the exit's own addresses: those of
// its interfaces, the hosts of Config.Addrs (its public address), the
// addresses Config.OwnAddrs gives and those SetExternalAddrs adds.
type ownAddrs struct {
	e *Server

	// refreshing makes refreshes one at a time, so that a set computed
	// before a change can never be stored after the set computed after it.
	refreshing sync.Mutex

	mu       sync.Mutex
	external []netip.Addr // from SetExternalAddrs
	named    []netip.Addr // the names in Config.Addrs, resolved
	resolved time.Time    // when named was last resolved

	link netip.AddrPort // Serve's listener; guarded by mu
}

// refresh reads the interfaces and stores the whole set in the policy.
func (o *ownAddrs) refresh(ctx context.Context) {
	o.refreshing.Lock()
	defer o.refreshing.Unlock()
	e := o.e
	var addrs, bcasts []netip.Addr
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		e.log.Warn("cannot read the interfaces' addresses to refuse them as destinations", "err", err)
	}
	for _, a := range ifs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			addrs = append(addrs, p.Addr())
			if b, ok := broadcastOf(p); ok {
				bcasts = append(bcasts, b)
			}
		}
	}
	addrs = append(addrs, e.cfg.OwnAddrs...)
	var names []string
	for _, hp := range e.cfg.Addrs {
		host, _, err := net.SplitHostPort(hp)
		if err != nil {
			host = hp
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			addrs = append(addrs, ip)
		} else if host != "" {
			names = append(names, host)
		}
	}
	o.mu.Lock()
	stale := len(names) > 0 && time.Since(o.resolved) >= ownResolve
	addrs = append(addrs, o.external...)
	named := o.named
	o.mu.Unlock()
	if stale {
		named = o.resolve(ctx, names)
		o.mu.Lock()
		o.named, o.resolved = named, time.Now()
		o.mu.Unlock()
	}
	addrs = append(addrs, named...)
	if e.own.Store(addrs) {
		e.log.Debug("own addresses refused as destinations", "addrs", e.own.Addrs())
	}
	e.own.StoreListeners(o.listening())
	if err != nil {
		// The interfaces could not be read: keep the broadcast addresses
		// known so far rather than allow them all until the next read.
		bcasts = append(bcasts, e.own.Broadcasts()...)
	}
	e.own.StoreBroadcasts(bcasts)
}

// broadcastOf returns the directed broadcast address of an IPv4 interface
// prefix, the last address of its network; a /31 or /32 has none.
func broadcastOf(p netip.Prefix) (netip.Addr, bool) {
	a := p.Addr().Unmap()
	if !a.Is4() || p.Bits() > 30 || p.Bits() < 0 {
		return netip.Addr{}, false
	}
	b := a.As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := range b {
		b[i] |= byte(host >> (24 - 8*i))
	}
	return netip.AddrFrom4(b), true
}

// listening returns where the exit's own process listens or receives: the
// addresses of Config.Listeners, its link listener, its DHT socket and,
// with Config.MDNS, its mDNS responder's sockets (from the start, so that
// there is no moment they are not refused). Its other sockets need no
// entry: each UDP association's socket and the forwarded ports are there
// to receive from anyone, the reachability probe's socket takes only the
// answer from its own forwarded port, and the NAT mapper's sockets (SSDP,
// NAT-PMP) are connected to the gateway, so the kernel hands them
// nothing from elsewhere.
func (o *ownAddrs) listening() []netip.AddrPort {
	e := o.e
	ls := slices.Clone(e.cfg.Listeners)
	o.mu.Lock()
	ls = append(ls, o.link)
	o.mu.Unlock()
	if e.cfg.MDNS {
		ls = append(ls, discovery.ResponderAddrs()...)
	}
	if e.dht != nil {
		// The socket's address once it is open; the one asked for
		// before, so that there is no moment it is not refused.
		if a, ok := e.dht.node.Addr().(*net.UDPAddr); ok {
			ls = append(ls, a.AddrPort())
		}
		if host, p, err := net.SplitHostPort(e.cfg.DHT.Node.Listen); err == nil {
			ip, _ := netip.ParseAddr(host) // none: every address
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				ls = append(ls, netip.AddrPortFrom(ip, uint16(n)))
			}
		}
	}
	return ls
}

// listen records the address of Serve's listener as one of the exit's own.
func (o *ownAddrs) listen(ctx context.Context, a net.Addr) {
	if tcp, ok := a.(*net.TCPAddr); ok {
		o.mu.Lock()
		o.link = tcp.AddrPort()
		o.mu.Unlock()
		o.refresh(ctx)
	}
}

// resolve looks up the names of the exit's public address, briefly: an
// address that does not resolve now is tried again later.
func (o *ownAddrs) resolve(ctx context.Context, names []string) []netip.Addr {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out []netip.Addr
	for _, n := range names {
		ips, err := o.e.names.resolver.LookupNetIP(ctx, "ip", n)
		if err != nil {
			o.e.log.Debug("public address does not resolve", "host", n, "err", err)
			continue
		}
		out = append(out, ips...)
	}
	return out
}

// watch refreshes the set every ownRefresh until ctx ends.
func (o *ownAddrs) watch(ctx context.Context) {
	t := time.NewTicker(ownRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			o.refresh(ctx)
		}
	}
}

// SetExternalAddrs tells the exit addresses that are its own without being
// on its interfaces, such as the external address a NAT gateway maps for
// it: it refuses them as destinations, as it does its interfaces'
// addresses. Each call replaces the addresses of the one before.
func (e *Server) SetExternalAddrs(addrs []netip.Addr) {
	e.ownAddrs.mu.Lock()
	e.ownAddrs.external = slices.Clone(addrs)
	e.ownAddrs.mu.Unlock()
	e.ownAddrs.refresh(context.Background())
}
