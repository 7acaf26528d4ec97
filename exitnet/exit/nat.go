package exit

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

// PortMapper opens ports on the router in front of the exit, whichever way
// the router speaks (exitnet/nat's Mapper is one). The exit maps its link
// port and every port it lends, and publishes the external ones.
type PortMapper interface {
	// Add maps proto ("tcp" or "udp") port internal of this host and
	// returns the external port the router gave; asked again, it returns
	// the current one. A port that could not be mapped now stays wanted
	// until Remove, and Changes signals once it is.
	Add(ctx context.Context, proto string, internal uint16) (uint16, error)
	// Remove stops mapping the port and deletes the mapping.
	Remove(ctx context.Context, proto string, internal uint16) error
	// ExternalAddr returns the router's public address, or why there is
	// none (in words a user can act on).
	ExternalAddr() (netip.Addr, error)
	// Changes signals that the external address or a mapping changed.
	Changes() <-chan struct{}
}

// mapTimeout bounds one exchange with the PortMapper on behalf of a client
// or at start.
const mapTimeout = 10 * time.Second

// public is what the exit knows of how the internet reaches it.
type public struct {
	// mapping makes the mapper calls for lent ports one at a time, with
	// the lease state they act on: a check of the ports must not remove
	// the mapping of a port lent again meanwhile.
	mapping sync.Mutex

	mu       sync.Mutex
	linkPort uint16               // the link listener's port; 0 before MapLink
	linkExt  uint16               // its external port; 0 while not mapped
	linkErr  string               // why it is not mapped
	addr     netip.Addr           // the router's public address; invalid while unknown
	addrErr  string               // why it is unknown
	forwards map[uint16]forwarded // lent port -> what the router maps for it
	// tell tells a lent port's client the port peers now reach it at,
	// while its forward stream is open.
	tell map[uint16]*teller
	// told remembers, by lent port, the client last lent it and the
	// external port it was last told, beyond the lease: a client asks
	// again by the number it was told (SPEC.md, forward), and that number
	// is the lent port's only where the router kept it. One entry per lent
	// port, so bounded by the lender's range.
	told  map[uint16]toldTo
	reach ReachReport
}

// forwarded is what the router maps for a lent port: the external port of
// each side, 0 while the router has not mapped it. A side whose mapping
// fails to renew keeps its last port, which the PortMapper asks for again.
type forwarded struct {
	tcp, udp uint16
}

// external is the port the lent port's client is told while the router
// maps it: the UDP side's, else the TCP side's; 0 while it maps neither.
// UDP first: a torrent client behind a SOCKS5 proxy takes inbound peers
// only as uTP over its UDP association (it opens no TCP listener), so the
// port it announces must be the one where UDP arrives.
func (f forwarded) external() uint16 {
	if f.udp != 0 {
		return f.udp
	}
	return f.tcp
}

// toldTo is the external port a lent port's client was told.
type toldTo struct {
	peer     link.PeerID
	external uint16
}

// MapLink maps the link listener's TCP port on the router, when the exit
// has a PortMapper, waiting at most ctx and mapTimeout for it, and says
// plainly in the log what the internet can reach. Serve calls it if the
// caller has not; a caller calls it first to print the external address
// (Addrs) before serving. A mapping that fails is not fatal: the
// PortMapper keeps trying, and the exit publishes the new address once it
// succeeds.
func (e *Server) MapLink(ctx context.Context, port uint16) {
	e.pub.mu.Lock()
	if e.pub.linkPort != 0 {
		e.pub.mu.Unlock()
		return
	}
	e.pub.linkPort = port
	e.pub.mu.Unlock()
	if e.cfg.NAT == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, mapTimeout)
	defer cancel()
	ext, err := e.cfg.NAT.Add(ctx, "tcp", port)
	e.pub.mu.Lock()
	e.pub.linkExt, e.pub.linkErr = ext, errText(err)
	e.pub.mu.Unlock()
	e.refreshPublic()
	pub := e.publicLink()
	e.pub.mu.Lock()
	noPublic := e.pub.addrErr
	e.pub.mu.Unlock()
	if noPublic != "" {
		e.log.Warn("the router has no public address, so the internet cannot reach this exit through it: "+noPublic, "port", port)
	}
	switch {
	case err != nil:
		e.log.Warn("cannot map the link port on the router: the exit is reachable only from this network "+
			"until it can (it keeps trying); or forward TCP port "+strconv.Itoa(int(port))+" to this machine by hand "+
			"and give --public-addr", "port", port, "err", err)
	case !pub.IsValid():
		e.log.Warn("link port mapped, but the router has no public address", "port", port, "external", ext)
	default:
		e.log.Info("link port mapped on the router", "port", port, "external", ext, "public", pub.String())
	}
	e.nudgeDHT()
}

// refreshPublic re-reads the link mapping's external port and the router's
// public address, and reports whether what the exit publishes changed.
func (e *Server) refreshPublic() bool {
	if e.cfg.NAT == nil {
		return false
	}
	addr, aerr := e.cfg.NAT.ExternalAddr()
	e.pub.mu.Lock()
	port := e.pub.linkPort
	e.pub.mu.Unlock()
	var ext uint16
	var lerr error
	if port != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), mapTimeout)
		ext, lerr = e.cfg.NAT.Add(ctx, "tcp", port) // the current mapping, once made
		cancel()
	}
	if aerr != nil || !e.isPublic(addr) {
		addr = netip.Addr{}
	}
	e.pub.mu.Lock()
	changed := addr != e.pub.addr || ext != e.pub.linkExt
	e.pub.addr, e.pub.addrErr = addr, errText(aerr)
	if port != 0 {
		e.pub.linkExt, e.pub.linkErr = ext, errText(lerr)
	}
	e.pub.mu.Unlock()
	if changed {
		// The router's public address is the exit's own too: flows to it
		// would reach the exit's host through the router.
		var own []netip.Addr
		if addr.IsValid() {
			own = []netip.Addr{addr}
		}
		e.SetExternalAddrs(own)
	}
	return changed
}

// publicLink is the public address and port of the link listener, when the
// router maps it and has a public address.
func (e *Server) publicLink() netip.AddrPort {
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	if !e.pub.addr.IsValid() || e.pub.linkExt == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(e.pub.addr, e.pub.linkExt)
}

// Addrs returns the addresses the exit publishes (in its descriptor):
// its public address and mapped link port first when the router maps it,
// then Config.Addrs.
func (e *Server) Addrs() []string {
	addrs := slices.Clone(e.cfg.Addrs)
	if pub := e.publicLink(); pub.IsValid() {
		s := pub.String()
		addrs = slices.DeleteFunc(addrs, func(a string) bool { return a == s })
		addrs = append([]string{s}, addrs...)
	}
	return addrs
}

// watchNAT follows the PortMapper until ctx ends: when the public address
// or the link's external port changes, the exit signs a new descriptor and
// checks its reachability again; it checks it every reachEvery as well.
func (e *Server) watchNAT(ctx context.Context) {
	var changes <-chan struct{}
	if e.cfg.NAT != nil {
		changes = e.cfg.NAT.Changes()
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
			if !e.refreshPublic() {
				e.checkForwards()
				continue
			}
			e.republish()
			e.checkForwards()
		case <-t.C:
		}
		e.checkReach(ctx)
		t.Reset(reachEvery)
	}
}

// republish makes the next descriptor request sign a fresh descriptor with
// the current addresses, and the DHT publisher re-announce with the new
// external port and publish the new descriptor at once.
func (e *Server) republish() {
	e.desc.mu.Lock()
	e.desc.signed = time.Time{}
	e.desc.mu.Unlock()
	e.nudgeDHT()
	pub := e.publicLink()
	if pub.IsValid() {
		e.log.Info("public address changed; descriptor re-signed", "public", pub.String())
	} else {
		e.log.Warn("the router no longer maps the link port or has no public address; descriptor re-signed without it")
	}
}

// mapForward maps a port lent to peer on the router, TCP and UDP, and
// returns the port to tell it (toldPort): the port itself when the router
// mapped neither side (no mapper, or the router refused: the port is then
// reachable only where the exit's own address is). What peer is told is
// noted with the mapping, under the same locks, so that a checkForwards
// that moves the port after it finds the note to update.
func (e *Server) mapForward(ctx context.Context, peer link.PeerID, port uint16) uint16 {
	if e.cfg.NAT == nil {
		return port
	}
	e.pub.mapping.Lock()
	defer e.pub.mapping.Unlock()
	ctx, cancel := context.WithTimeout(ctx, mapTimeout)
	defer cancel()
	var f forwarded
	var err error
	if f.tcp, err = e.cfg.NAT.Add(ctx, "tcp", port); err != nil {
		e.log.Warn("cannot map a forwarded port on the router; peers outside this network cannot reach it until it can",
			"port", port, "proto", "tcp", "err", err)
		f.tcp = 0
	}
	if f.udp, err = e.cfg.NAT.Add(ctx, "udp", port); err != nil {
		e.log.Warn("cannot map a forwarded port on the router", "port", port, "proto", "udp", "err", err)
		f.udp = 0
	}
	e.warnSplit(port, f)
	told := toldPort(port, f)
	e.pub.mu.Lock()
	if e.pub.forwards == nil {
		e.pub.forwards = make(map[uint16]forwarded)
	}
	if e.pub.told == nil {
		e.pub.told = make(map[uint16]toldTo)
	}
	e.pub.forwards[port] = f
	e.pub.told[port] = toldTo{peer: peer, external: told}
	e.pub.mu.Unlock()
	return told
}

// warnSplit says when the router maps a lent port's two sides at different
// external ports: peers reach each side only at its own, and the client is
// told one.
func (e *Server) warnSplit(port uint16, f forwarded) {
	if f.tcp != 0 && f.udp != 0 && f.tcp != f.udp {
		e.log.Warn("the router mapped a forwarded port's UDP side to another external port than its TCP side; "+
			"peers reach each side only at its own", "port", port, "tcp", f.tcp, "udp", f.udp, "told", f.external())
	}
}

// unmapForward deletes the router's mappings of a port whose lease ended.
func (e *Server) unmapForward(port uint16) {
	if e.cfg.NAT == nil {
		return
	}
	e.pub.mapping.Lock()
	defer e.pub.mapping.Unlock()
	e.pub.mu.Lock()
	delete(e.pub.forwards, port)
	e.pub.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), mapTimeout)
	defer cancel()
	for _, proto := range []string{"tcp", "udp"} {
		if err := e.cfg.NAT.Remove(ctx, proto, port); err != nil {
			e.log.Debug("forwarded port still being unmapped in the background", "port", port, "proto", proto, "err", err)
		}
	}
}

// checkForwards re-reads both sides of each lent port's mapping, and tells
// a client when the port it should be told moved (the router restarted
// and gave another external port, say), since peers reach it only at the
// new one: a lease message on its forward stream (SPEC.md, public port). A
// client too old to read it keeps the old port until its next forward.
func (e *Server) checkForwards() {
	e.pub.mu.Lock()
	ports := slices.Collect(maps.Keys(e.pub.forwards))
	e.pub.mu.Unlock()
	for _, p := range ports {
		e.pub.mapping.Lock()
		e.pub.mu.Lock()
		was, lent := e.pub.forwards[p]
		e.pub.mu.Unlock()
		if !lent { // its lease ended since the snapshot: nothing to check
			e.pub.mapping.Unlock()
			continue
		}
		now := was
		ctx, cancel := context.WithTimeout(context.Background(), mapTimeout)
		if x, err := e.cfg.NAT.Add(ctx, "tcp", p); err == nil && x != 0 {
			now.tcp = x
		}
		if x, err := e.cfg.NAT.Add(ctx, "udp", p); err == nil && x != 0 {
			now.udp = x
		}
		cancel()
		if now == was {
			e.pub.mapping.Unlock()
			continue
		}
		told := toldPort(p, now)
		e.pub.mu.Lock()
		e.pub.forwards[p] = now
		if t, ok := e.pub.told[p]; ok {
			t.external = told
			e.pub.told[p] = t
		}
		t := e.pub.tell[p]
		e.pub.mu.Unlock()
		e.pub.mapping.Unlock()
		e.warnSplit(p, now)
		if told == toldPort(p, was) {
			continue
		}
		e.log.Warn("the router moved a forwarded port; telling its client the new one", "port", p,
			"was", toldPort(p, was), "now", told)
		if t != nil {
			t.update(e, p)
		}
	}
}

// lentUnder is the port to ask the lender for when peer asks for want:
// the port lent under the external port want that peer was last told, or
// want itself. Behind a router that gave another external port, the number
// a client was told is not the port it was lent, and the lender knows
// only the latter.
func (e *Server) lentUnder(peer link.PeerID, want uint16) uint16 {
	if e.cfg.NAT == nil || want == 0 {
		return want
	}
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	if t, ok := e.pub.told[want]; ok && t.peer == peer && t.external == want {
		return want // the router kept the number
	}
	for port, t := range e.pub.told {
		if t.peer == peer && t.external == want {
			return port
		}
	}
	return want
}

// toldPort is the port a client is told for lent port p that the router
// maps as f: f.external(), or p itself while the router maps neither side.
func toldPort(p uint16, f forwarded) uint16 {
	if x := f.external(); x != 0 {
		return x
	}
	return p
}

// tellForward makes checkForwards tell port's client through send until
// the returned func is called, and tells it at once if the router moved
// the port since the client was told was.
func (e *Server) tellForward(port, was uint16, send func(public uint16)) (stop func()) {
	t := &teller{last: was, send: send}
	e.pub.mu.Lock()
	if e.pub.tell == nil {
		e.pub.tell = make(map[uint16]*teller)
	}
	e.pub.tell[port] = t
	e.pub.mu.Unlock()
	t.update(e, port)
	return func() {
		e.pub.mu.Lock()
		if e.pub.tell[port] == t {
			delete(e.pub.tell, port)
		}
		e.pub.mu.Unlock()
	}
}

// teller tells one lent port's client the external port peers reach it
// at. Whoever calls update, in whatever order, the client hears each port
// once and the newest last: the port is read, and sent, under mu.
type teller struct {
	mu   sync.Mutex
	last uint16 // what the client was last told
	send func(public uint16)
}

// update tells the client the port's external port if it changed since
// the client was last told.
func (t *teller) update(e *Server, port uint16) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.pub.mu.Lock()
	f, lent := e.pub.forwards[port]
	e.pub.mu.Unlock()
	if now := f.external(); lent && now != 0 && now != t.last {
		t.send(now)
		t.last = now
	}
}

// hostIP is the IP of a "host:port" address, if it is one.
func hostIP(hostport string) (netip.Addr, uint16, bool) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.Addr{}, 0, false
	}
	ip, err := netip.ParseAddr(host)
	port, perr := strconv.ParseUint(p, 10, 16)
	return ip.Unmap(), uint16(port), err == nil && perr == nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
