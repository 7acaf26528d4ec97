package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Two-hop paths. With Config.Hops 2 a candidate's link runs inside a relay
// stream (wire.KindRelay) on a link to another exit, the relay: the relay
// sees the client's address and ciphertext, the exit the destinations and
// the relay's address. The client's link to the relay uses a fresh key for
// each link, so that no relay can tell two of its links apart or tie them
// to the key an exit sees; the link to the exit uses the key derived for
// that exit (link.Identity.ForExit), as on one hop.

// errRelay wraps failures of the relay hop: the exit is not to blame.
var errRelay = errors.New("relay")

// hop is the relay part of a two-hop path: the link to the relay that
// carries the candidate's link to its exit.
type hop struct {
	relay link.ExitAddr
	sess  *link.Session // the link to the relay
	rtt   time.Duration // its first ping
}

// watch waits for either of the path's links to close, closes the other,
// and reports whether the relay was lost: its link closed, or no longer
// answers a ping when the exit's closed. It returns when both are closed
// (at once when ctx ends).
func (h *hop) watch(ctx context.Context, inner *link.Session) (relayLost bool) {
	select {
	case <-h.sess.CloseChan():
		relayLost = true
	case <-inner.CloseChan():
		relayLost = !h.alive()
	case <-ctx.Done():
	}
	inner.Close()
	h.sess.Close()
	return relayLost
}

// alive pings the relay, for at most a second.
func (h *hop) alive() bool {
	if h.sess.IsClosed() {
		return false
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.sess.Ping()
		done <- err
	}()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case err := <-done:
		return err == nil
	case <-t.C:
		h.sess.Close() // ends the ping
		<-done
		return false
	}
}

// relayBackoff is how long a relay that failed is passed over.
func (p *Pool) relayBackoff() time.Duration { return max(p.cfg.MaxBackoff, 5*time.Second) }

// pickRelayLocked chooses the relay for a path to c's exit: a known exit
// that relays (or whose descriptor the pool has not seen) in another /16
// (IPv4) or /32 (IPv6) than c's exit, or one the user pinned; never c's
// exit itself, never an exit of the pool's other paths, and not one that
// failed lately; the nearest first. ok is false when there is none.
func (p *Pool) pickRelayLocked(c *candidate) (link.ExitAddr, bool) {
	now := time.Now()
	var busy []link.PeerID // exits of the pool's paths
	for _, o := range p.cands {
		if o.sess != nil || o.dialing {
			busy = append(busy, o.exit.ID)
		}
	}
	type option struct {
		a     link.ExitAddr
		rtt   time.Duration
		order int
	}
	var best *option
	pinned := len(p.cfg.Relays) > 0
	consider := func(a link.ExitAddr, rtt time.Duration, order int) {
		// A relay the user pinned is the user's choice, in whatever
		// network.
		if a.ID == c.exit.ID || !pinned && sameNetwork(a.Addr, c.exit.Addr) || now.Before(p.relayBad[a.ID]) {
			return
		}
		for _, b := range busy {
			if b == a.ID {
				return
			}
		}
		o := option{a, rtt, order}
		if best == nil || better(o.rtt, best.rtt, o.order, best.order) {
			best = &o
		}
	}
	if pinned {
		for i, r := range p.cfg.Relays {
			consider(r, p.relayRTT[r.ID], i)
		}
	} else {
		for _, o := range p.cands {
			if o.desc != nil && !o.desc.Relay {
				continue
			}
			consider(o.exit, p.relayRTT[o.exit.ID], o.order)
		}
	}
	if best == nil {
		return link.ExitAddr{}, false
	}
	return best.a, true
}

// better orders relays: a known round trip before an unknown one, the
// shorter first, then in the order learned.
func better(rtt, than time.Duration, order, thanOrder int) bool {
	switch {
	case (rtt == 0) != (than == 0):
		return rtt != 0
	case rtt != than:
		return rtt < than
	}
	return order < thanOrder
}

// sameNetwork reports whether two host:port addresses are in one IPv4 /16
// or IPv6 /32 (or name the same host): one operator, or one observer,
// could then well see both hops.
func sameNetwork(a, b string) bool {
	ha, _, err1 := net.SplitHostPort(a)
	hb, _, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	ia, erra := netip.ParseAddr(ha)
	ib, errb := netip.ParseAddr(hb)
	if erra != nil || errb != nil {
		return ha == hb
	}
	ia, ib = ia.Unmap(), ib.Unmap()
	if ia.Is4() != ib.Is4() {
		return false
	}
	bits := 32
	if ia.Is4() {
		bits = 16
	}
	pa, _ := ia.Prefix(bits)
	return pa.Contains(ib)
}

// DialVia links to exit through relay: a link to the relay under a fresh
// key, a relay stream on it naming the exit, and inside that stream the
// ordinary link handshake with the exit, which must prove exit.ID; cfg's
// identity is what the exit sees. It returns the link to the exit and the
// hop under it, each checked with one ping. Errors of the relay's part
// wrap errRelay.
func DialVia(ctx context.Context, cfg link.Config, relay, exit link.ExitAddr) (*link.Session, *hop, time.Duration, error) {
	eph, err := link.NewIdentity()
	if err != nil {
		return nil, nil, 0, err
	}
	rcfg := cfg
	rcfg.Identity, rcfg.ServerName = eph, ""
	outer, rrtt, err := Dial(ctx, rcfg, relay)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%w %s: %v", errRelay, relay.ID.Short(), err)
	}
	dst, err := resolveExit(ctx, exit.Addr)
	if err != nil {
		outer.Close()
		return nil, nil, 0, err
	}
	st, err := outer.OpenStream(ctx)
	if err != nil {
		outer.Close()
		return nil, nil, 0, fmt.Errorf("%w %s: open stream: %v", errRelay, relay.ID.Short(), err)
	}
	req, _ := wire.Request{Kind: wire.KindRelay, Dst: dst}.AppendBinary(nil)
	req = append(req, exit.ID[:]...)
	st.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := st.Write(req); err != nil {
		outer.Close()
		return nil, nil, 0, fmt.Errorf("%w %s: %v", errRelay, relay.ID.Short(), err)
	}
	resp, err := wire.ReadResponse(st)
	if err != nil {
		outer.Close()
		return nil, nil, 0, fmt.Errorf("%w %s: no answer to the relay request: %v", errRelay, relay.ID.Short(), err)
	}
	st.SetDeadline(time.Time{})
	if resp.Status != wire.StatusOK {
		outer.Close()
		err := &wire.Error{Status: resp.Status}
		if resp.Status == wire.StatusKindNotSupported {
			return nil, nil, 0, fmt.Errorf("%w %s does not relay: %v", errRelay, relay.ID.Short(), err)
		}
		// The relay could not or would not reach the exit: the exit's
		// fault as far as the client can tell.
		return nil, nil, 0, fmt.Errorf("relay %s cannot reach exit %s: %w", relay.ID.Short(), exit.ID.Short(), err)
	}
	ecfg := cfg
	ecfg.ServerName = "" // the exit's derived name: the relay knows the exit's ID anyway
	ecfg.Nested = true
	inner, err := link.Client(ctx, st, ecfg, exit.ID)
	if err != nil {
		outer.Close()
		return nil, nil, 0, fmt.Errorf("link to exit %s through relay %s: %w", exit.ID.Short(), relay.ID.Short(), err)
	}
	rtt, err := inner.Ping()
	if err != nil {
		inner.Close()
		outer.Close()
		return nil, nil, 0, errors.New("exit closed the link after the handshake (is this client on its allow-list? see 'swarmvpn id --for-exit'): " + err.Error())
	}
	return inner, &hop{relay: relay, sess: outer, rtt: rrtt}, rtt, nil
}

// resolveExit turns the exit's host:port into the IP address the relay
// is asked to connect to: the relay resolves no names.
func resolveExit(ctx context.Context, hostport string) (wire.Addr, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return wire.Addr{}, fmt.Errorf("exit address %q: %w", hostport, err)
	}
	a, err := wire.ParseAddr(hostport)
	if err != nil {
		return wire.Addr{}, err
	}
	if a.IP.IsValid() {
		return a, nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return wire.Addr{}, fmt.Errorf("resolve exit %s: %w", host, err)
	}
	return wire.ParseAddr(net.JoinHostPort(ips[0].Unmap().String(), port))
}
