package exit

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// learnEvery is how often an exit fetches the descriptors of the exits its
// operator names, so that what it passes on stays fresh.
const learnEvery = 30 * time.Minute

// advertise announces the exit on the LAN until ctx ends. Without
// multicast (a container, a VPS) that fails, which is worth a warning only.
func (e *Server) advertise(ctx context.Context, addr net.Addr) {
	ln, ok := addr.(*net.TCPAddr)
	if !ok {
		return
	}
	s, err := e.Descriptor()
	if err != nil {
		e.log.Warn("no descriptor to advertise", "err", err)
		return
	}
	id := e.cfg.Link.Identity.ID()
	d, err := s.Verify(id, time.Now())
	if err != nil {
		e.log.Warn("the exit's own descriptor does not verify; not advertising it", "err", err)
		return
	}
	var ips []net.IP
	if !ln.IP.IsUnspecified() {
		ips = []net.IP{ln.IP}
	}
	if err := discovery.Advertise(ctx, id, ln.Port, ips, d.Caps(), s.Digest()); err != nil {
		e.log.Warn("not advertising on the LAN (mDNS unavailable); clients can still use the exit address", "err", err)
	}
}

// learnKnown fetches the descriptors of the KnownExits, now and every
// learnEvery, so this exit can pass them on to its clients.
func (e *Server) learnKnown(ctx context.Context) {
	cfg := link.Config{Identity: e.cfg.Link.Identity}
	t := time.NewTicker(learnEvery)
	defer t.Stop()
	for {
		for _, k := range e.cfg.KnownExits {
			s, err := discovery.FetchOwn(ctx, cfg, k)
			if err == nil {
				err = e.Learn(s)
			}
			if err != nil && ctx.Err() == nil {
				e.log.Warn("cannot learn a known exit", "exit", k.ID.Short(), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Addrs lists the addresses clients can use to reach an exit listening on
// ln: the public host when one is given, the listen address when it is
// specific, and otherwise every interface address, global ones first.
func Addrs(id link.PeerID, ln *net.TCPAddr, public string) []link.ExitAddr {
	port := strconv.Itoa(ln.Port)
	mk := func(host string) link.ExitAddr { return link.ExitAddr{ID: id, Addr: net.JoinHostPort(host, port)} }
	if public != "" {
		return []link.ExitAddr{mk(public)}
	}
	if !ln.IP.IsUnspecified() {
		return []link.ExitAddr{mk(ln.IP.String())}
	}
	var global, local []link.ExitAddr
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr()
		switch {
		case ip.Is6() && ln.IP.To4() != nil: // an IPv4 listener
		case ip.IsLinkLocalUnicast(): // would need a zone
		case ip.IsLoopback():
			local = append(local, mk(ip.String()))
		default:
			global = append(global, mk(ip.String()))
		}
	}
	if len(global) > 0 {
		return global
	}
	if len(local) > 0 {
		return local
	}
	return []link.ExitAddr{mk("127.0.0.1")}
}
