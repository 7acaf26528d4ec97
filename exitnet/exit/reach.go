package exit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

const (
	// reachEvery is how often an exit checks again that the internet
	// reaches it, besides each time its public address changes.
	reachEvery = 30 * time.Minute
	// reachTimeout bounds the answering exit's dial and handshake.
	reachTimeout = 10 * time.Second
	// maxReachAsked is how many known exits one check asks at most.
	maxReachAsked = 3
	// maxReachAnswering is how many reach requests an exit answers at once.
	maxReachAnswering = 4
)

// Reachability states.
const (
	ReachUnknown     = "unknown"
	ReachReachable   = "reachable"
	ReachUnreachable = "not reachable"
)

// ReachReport is what the exit knows of its reachability from the
// internet.
type ReachReport struct {
	State  string    `json:"state"`            // ReachUnknown, ReachReachable or ReachUnreachable
	Addr   string    `json:"addr,omitempty"`   // the address checked
	Method string    `json:"method,omitempty"` // how it was checked
	Detail string    `json:"detail,omitempty"` // why, in words a user can act on
	At     time.Time `json:"at,omitzero"`      // when it was last checked
	// Observed is the address another exit saw this exit's link come
	// from; when it differs from the router's public address, there is
	// another NAT, or another route out.
	Observed string `json:"observed,omitempty"`
}

// Publishable reports whether the exit should announce itself beyond its
// LAN (on the DHT, dht.go): not when it knows it is not reachable, nor
// when it has a PortMapper that found no public address.
func (e *Server) Publishable() bool {
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	switch {
	case e.pub.reach.State == ReachUnreachable:
		return false
	case e.pub.reach.State == ReachReachable:
		return true
	}
	return e.cfg.NAT == nil || (e.pub.addr.IsValid() && e.pub.linkExt != 0)
}

// Reach returns what the exit knows of its reachability.
func (e *Server) Reach() ReachReport {
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	r := e.pub.reach
	if r.State == "" {
		r.State = ReachUnknown
	}
	return r
}

// reachTarget is the address to check: the public link address the router
// maps, else the first published address whose host is a public IP.
func (e *Server) reachTarget() (netip.AddrPort, string) {
	if pub := e.publicLink(); pub.IsValid() {
		return pub, ""
	}
	if e.cfg.NAT != nil {
		e.pub.mu.Lock()
		why := e.pub.addrErr // a router without a public address is the root cause
		if why == "" {
			why = e.pub.linkErr
		}
		e.pub.mu.Unlock()
		if why != "" {
			return netip.AddrPort{}, "the router does not map the link port to a public address: " + why
		}
	}
	for _, a := range e.cfg.Addrs {
		if ip, port, ok := hostIP(a); ok && e.isPublic(ip) {
			return netip.AddrPortFrom(ip, port), ""
		}
	}
	return netip.AddrPort{}, "no public address to check"
}

// checkReach asks known exits to dial the exit's public address, and
// records and logs the answer.
func (e *Server) checkReach(ctx context.Context) {
	target, why := e.reachTarget()
	r := ReachReport{State: ReachUnknown, At: time.Now()}
	switch {
	case !target.IsValid() && e.cfg.NAT != nil && why != "no public address to check":
		// The router maps nothing public: the exit knows the internet
		// cannot reach it.
		r.State, r.Detail, r.Method = ReachUnreachable, why, "router"
	case !target.IsValid():
		r.Detail = why
	case len(e.cfg.KnownExits) == 0:
		r.Addr = target.String()
		r.Detail = "no other exit to ask: name one with --known-exit to check that the internet reaches this exit"
	default:
		r = e.askReach(ctx, target)
	}
	if ctx.Err() != nil {
		return
	}
	e.pub.mu.Lock()
	prev := e.pub.reach
	e.pub.reach = r
	addr := e.pub.addr
	e.pub.mu.Unlock()
	if prev.State == r.State && prev.Addr == r.Addr && prev.Observed == r.Observed {
		return
	}
	if prev.State != r.State {
		e.nudgeDHT() // Publishable may have changed
	}
	args := []any{"addr", r.Addr, "method", r.Method, "detail", r.Detail}
	switch {
	case r.State == ReachReachable:
		e.log.Info("reachable from the internet", args...)
	case r.State == ReachUnreachable:
		e.log.Warn("NOT reachable from the internet: clients outside this network cannot link to this exit, "+
			"and it will not publish itself", args...)
	case e.cfg.NAT != nil:
		e.log.Info("reachability unknown", args...)
	default:
		e.log.Debug("reachability unknown", args...)
	}
	if obs, err := netip.ParseAddrPort(r.Observed); err == nil && addr.IsValid() && obs.Addr().Unmap() != addr {
		e.log.Warn("another exit sees this exit's traffic come from another address than the router's public one: "+
			"another NAT is in front of the router, or traffic leaves by another route", "observed", r.Observed, "router", addr)
	}
}

// askReach asks the known exits, in order, until one gives a definite
// answer.
func (e *Server) askReach(ctx context.Context, target netip.AddrPort) ReachReport {
	r := ReachReport{State: ReachUnknown, Addr: target.String(), At: time.Now()}
	var errs []error
	for i, k := range e.cfg.KnownExits {
		if i == maxReachAsked || ctx.Err() != nil {
			break
		}
		resp, err := e.ask(ctx, k, target)
		if err != nil {
			errs = append(errs, fmt.Errorf("exit %s: %w", k.ID.Short(), err))
			continue
		}
		if resp.Bound.IP.IsValid() {
			r.Observed = resp.Bound.String()
		}
		method := "dial-back by exit " + k.ID.Short()
		switch resp.Status {
		case wire.StatusOK:
			r.State, r.Method, r.Detail = ReachReachable, method, ""
			return r
		case wire.StatusNotAllowed:
			if ip := resp.Bound.IP.Unmap(); ip.IsValid() && ip != target.Addr().Unmap() {
				// It dials back only the address it sees the link come
				// from (or, for IPv6, one of its /64), and that is not
				// the router's.
				errs = append(errs, fmt.Errorf("exit %s sees this exit's link come from %s, not %s, and dials back only there (or, for IPv6, in its /64)",
					k.ID.Short(), ip, target.Addr()))
				continue
			}
			errs = append(errs, fmt.Errorf("exit %s: %v", k.ID.Short(), resp.Status))
			continue
		case wire.StatusKindNotSupported, wire.StatusAddrTypeUnsupported:
			errs = append(errs, fmt.Errorf("exit %s: %v", k.ID.Short(), resp.Status))
			continue
		case wire.StatusGeneralFailure:
			r.State, r.Method = ReachUnreachable, method
			r.Detail = "something else answers at " + target.String() + " (or the asked exit is busy): check the router's port forwarding"
			if ip := resp.Bound.IP.Unmap(); ip.IsValid() && ip != target.Addr().Unmap() {
				// Another address of the link's /64: the answer says
				// only that this exit's key did not answer there.
				r.Detail = "this exit's key does not answer at " + target.String() + " (or the asked exit is busy): " +
					"check the router's port forwarding and firewall"
			}
		default:
			r.State, r.Method = ReachUnreachable, method
			r.Detail = fmt.Sprintf("dialling %s from the internet: %v; check the router's port forwarding and firewall", target, resp.Status)
		}
		return r
	}
	r.Detail = "no other exit could check: " + errors.Join(errs...).Error()
	return r
}

// ask sends one reach request to the exit k.
func (e *Server) ask(ctx context.Context, k link.ExitAddr, target netip.AddrPort) (wire.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*reachTimeout)
	defer cancel()
	sess, err := link.Dial(ctx, link.Config{Identity: e.cfg.Link.Identity}, k)
	if err != nil {
		return wire.Response{}, err
	}
	defer sess.Close()
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return wire.Response{}, err
	}
	defer st.Close()
	req := wire.Request{Kind: wire.KindReach, Dst: wire.Addr{IP: target.Addr(), Port: target.Port()}}
	return wire.Call(ctx, st, req, 2*reachTimeout)
}

// ReachStats counts the reach requests an exit answered for others.
type ReachStats struct {
	// Dialled back, whatever the dial found: the address the asker's link
	// comes from; another address of its IPv6 /64.
	Answered, AnsweredSubnet uint64
	// Refused, by reason: the address is not the asker's own (the one its
	// link comes from, or for IPv6 one in its /64), or not public on an
	// exit that does not allow private addresses; the exit or the asker
	// had as many under way as they may.
	RefusedAddr, RefusedBusy uint64
}

type reachCounters struct {
	answered, answeredSubnet, refusedAddr, refusedBusy atomic.Uint64
}

func (c *reachCounters) snapshot() ReachStats {
	return ReachStats{Answered: c.answered.Load(), AnsweredSubnet: c.answeredSubnet.Load(),
		RefusedAddr: c.refusedAddr.Load(), RefusedBusy: c.refusedBusy.Load()}
}

// reachScope is what a reach request's address is to the asker.
type reachScope uint8

const (
	reachRefused  reachScope = iota // not the asker's own: dial nothing
	reachObserved                   // the address the asker's link comes from
	// reachSubnet is another address of the asker's IPv6 /64: an exit at
	// home links out from a temporary privacy address (RFC 8981) and
	// listens on its stable one beside it.
	reachSubnet
)

// reachNoSubnet are IPv6 ranges whose /64s are not one network of hosts:
// the forms that embed IPv4 addresses (IPv4-compatible, -mapped and
// -translated in ::/64, NAT64, 6to4, Teredo, whose /64 holds every client
// of one server). A /64 that overlaps one of them is no reach subnet.
var reachNoSubnet = []netip.Prefix{
	netip.MustParsePrefix("::/64"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("2002::/16"),
}

// reachAllowed says whether and how the exit may dial dst back for an
// asker whose link comes from observed: only the asker's own address,
// whatever port it names, so that a reach request cannot make the exit
// connect, under its identity, to a host the asker chooses; for IPv6, also
// another address of the observed address's /64 (see reachSubnet), which
// answerReach answers without a word about what it found there but yes or
// no. IPv4-mapped addresses are IPv4 addresses: exact match only. Either
// way only a public address unless the exit allows private addresses (a
// lab).
func (e *Server) reachAllowed(dst, observed wire.Addr) reachScope {
	ip, obs := dst.IP.Unmap(), observed.IP.Unmap()
	if !ip.IsValid() || !obs.IsValid() || !e.isPublic(ip) && !e.policy.AllowPrivate {
		return reachRefused
	}
	if ip == obs {
		return reachObserved
	}
	if !ip.Is6() || !obs.Is6() || ip.Zone() != obs.Zone() {
		return reachRefused
	}
	subnet, err := obs.WithZone("").Prefix(64)
	if err != nil || !subnet.Contains(ip.WithZone("")) {
		return reachRefused
	}
	for _, r := range reachNoSubnet {
		if subnet.Overlaps(r) {
			return reachRefused
		}
	}
	return reachSubnet
}

// answerReach answers another exit's reach request: it dials dst, which
// must be the asker's own address (reachAllowed), as a connect flow would
// (the policy holds), and runs a link handshake there pinning the asker's
// peer ID.
//
// For another address of the asker's /64 than the observed one, which may
// be another host of its LAN, the answer tells the asker nothing it could
// not know: OK if the handshake proved its key there, else
// reachSubnetFailure, whatever the dial found, and only when reachTimeout
// is up, so that its timing says nothing either.
func (e *Server) answerReach(ctx context.Context, log *slog.Logger, sess *link.Session, st *yamux.Stream, c *client, dst wire.Addr) {
	defer st.Close()
	observed := wire.AddrFromNet(sess.Conn.RemoteAddr())
	respond := func(s wire.Status) { wire.Respond(st, wire.Response{Status: s, Bound: observed}) }
	if !dst.IP.IsValid() {
		respond(wire.StatusAddrTypeUnsupported)
		return
	}
	scope := e.reachAllowed(dst, observed)
	if scope == reachRefused {
		e.stats.reach.refusedAddr.Add(1)
		log.Debug("reach refused: not the asker's own public address", "dst", dst)
		respond(wire.StatusNotAllowed)
		return
	}
	select {
	case e.reaching <- struct{}{}:
		defer func() { <-e.reaching }()
	default:
		e.stats.reach.refusedBusy.Add(1)
		respond(wire.StatusGeneralFailure)
		return
	}
	if !c.reaching.CompareAndSwap(false, true) {
		e.stats.reach.refusedBusy.Add(1)
		respond(wire.StatusGeneralFailure)
		return
	}
	defer c.reaching.Store(false)
	if scope == reachSubnet {
		e.stats.reach.answeredSubnet.Add(1)
	} else {
		e.stats.reach.answered.Add(1)
	}
	ctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	status := e.dialBack(ctx, log, sess.Peer, dst)
	if scope == reachSubnet && status != wire.StatusOK {
		status = reachSubnetFailure
		<-ctx.Done() // every failure takes as long: the whole reachTimeout
	}
	respond(status)
}

// reachSubnetFailure is the one answer to a reach request for another
// address of the asker's /64 than the observed one that did not prove the
// asker's key there: the dial's own status (refused, unreachable, timed
// out) would tell the asker about other hosts of that network.
const reachSubnetFailure = wire.StatusGeneralFailure

// dialBack dials dst and runs a link handshake pinning peer, and returns
// the reach answer: OK when peer's key answered, the dial's status when
// the connection failed, general failure when something else answered.
func (e *Server) dialBack(ctx context.Context, log *slog.Logger, peer link.PeerID, dst wire.Addr) wire.Status {
	conn, err := e.dialer.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		log.Debug("reach: dial failed", "dst", dst, "err", err)
		return wire.StatusOf(err)
	}
	back, err := link.Client(ctx, conn, link.Config{Identity: e.cfg.Link.Identity, HandshakeTimeout: reachTimeout}, peer)
	if err != nil {
		log.Debug("reach: handshake failed", "dst", dst, "err", err)
		return wire.StatusGeneralFailure
	}
	back.Close()
	log.Debug("reach: the asker answers", "dst", dst)
	return wire.StatusOK
}
