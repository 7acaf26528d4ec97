package exit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"golang.org/x/time/rate"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/relay"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// RelayConfig shapes the exit's relay role: on a client's link, a relay
// stream (wire.KindRelay) asks the exit to connect to another exit and
// splice the stream to it, so that the client's link to that exit runs
// end to end inside the stream. The relay carries only to exits whose
// signed descriptor it has fetched and verified itself, at the address
// asked, and never parses what it carries. The zero value relays, with
// the default caps.
type RelayConfig struct {
	// Off refuses relay streams (status 7) and leaves the relay
	// capability out of the descriptor.
	Off bool
	// MaxFlows caps the relayed streams open at once, for all clients;
	// MaxFlowsPerClient, for one client (peer ID). A client needs one per
	// path, two while it replaces one. Defaults 256 and 8.
	MaxFlows, MaxFlowsPerClient int
	// Rate caps the bytes per second relayed for all clients together,
	// both directions. 0 means unlimited.
	Rate int64
	// VerifiedFor is how long an exit's verified descriptor is trusted
	// before it is fetched again (never past the descriptor's expiry).
	// Default 10m.
	VerifiedFor time.Duration
}

// relayFailedFor is how long a failed verification is remembered: no
// client can make the relay knock on a host more often than this.
const relayFailedFor = 30 * time.Second

// maxRelayVerifying bounds the descriptor fetches in progress at once.
const maxRelayVerifying = 4

// RelayStats counts what the relay role carried and refused. Refusals are
// counted by reason; none names an address.
type RelayStats struct {
	Flows  uint64 // relayed streams spliced since start
	Open   int64  // open now
	Bytes  uint64 // carried, both directions
	Failed uint64 // verified exits that could not be dialled
	// Refused, by reason: relaying is off; the address is one the policy
	// refuses (loopback, private, the exit's own...); no swarmvpn exit
	// with that peer ID proved itself there (a plain server, another key,
	// a descriptor that did not verify); the relay or the client is at
	// its flow cap; malformed requests.
	RefusedOff, RefusedPolicy, RefusedUnverified, RefusedFull, RefusedMalformed uint64
}

type relayCounters struct {
	flows, bytes, failed                                           atomic.Uint64
	open                                                           atomic.Int64
	refusedOff, refusedPolicy, refusedUnverified, refusedFull, bad atomic.Uint64
}

func (c *relayCounters) snapshot() RelayStats {
	return RelayStats{Flows: c.flows.Load(), Open: c.open.Load(), Bytes: c.bytes.Load(), Failed: c.failed.Load(),
		RefusedOff: c.refusedOff.Load(), RefusedPolicy: c.refusedPolicy.Load(),
		RefusedUnverified: c.refusedUnverified.Load(), RefusedFull: c.refusedFull.Load(), RefusedMalformed: c.bad.Load()}
}

// relayState is the relay role's state: the exits it has verified, and
// its caps.
type relayState struct {
	limiter   *rate.Limiter // nil: unlimited
	verifying chan struct{}

	mu       sync.Mutex
	verified map[relayKey]time.Time // until when
	failed   map[relayKey]time.Time // until when
	open     int
	perPeer  map[link.PeerID]int
}

type relayKey struct {
	id   link.PeerID
	addr netip.AddrPort
}

func (e *Server) relayOn() bool { return !e.cfg.Relay.Off }

// RelayStats returns the relay role's counters.
func (e *Server) RelayStats() RelayStats { return e.stats.relay.snapshot() }

// serveRelay answers a relay stream: it reads the exit's peer ID after the
// header, checks the address against the policy, verifies the exit's
// descriptor there (or finds it verified), dials it and splices. The log
// names the exit by its short peer ID at Debug only, never an address.
func (e *Server) serveRelay(ctx context.Context, log *slog.Logger, st *yamux.Stream, peer link.PeerID, dst wire.Addr) {
	c := &e.stats.relay
	refuse := func(s wire.Status, counter *atomic.Uint64, why string) {
		counter.Add(1)
		log.Debug("relay refused", "stream", st.StreamID(), "reason", why)
		wire.Respond(st, wire.Response{Status: s})
		st.Close()
	}
	if e.cfg.Relay.Off {
		refuse(wire.StatusKindNotSupported, &c.refusedOff, "relaying is off")
		return
	}
	var id link.PeerID
	st.SetReadDeadline(time.Now().Add(orDefault(e.cfg.RequestTimeout, 10*time.Second)))
	if _, err := io.ReadFull(st, id[:]); err != nil {
		c.bad.Add(1)
		st.Reset()
		return
	}
	st.SetReadDeadline(time.Time{})
	if !dst.IP.IsValid() || dst.Port == 0 {
		refuse(wire.StatusAddrTypeUnsupported, &c.bad, "the exit's address is not an IP address and port")
		return
	}
	if id == e.cfg.Link.Identity.ID() {
		refuse(wire.StatusNotAllowed, &c.refusedPolicy, "asked to relay to itself")
		return
	}
	ap := netip.AddrPortFrom(dst.IP.Unmap(), dst.Port)
	if err := e.policy.Check(ap.Addr(), ap.Port()); err != nil {
		refuse(wire.StatusNotAllowed, &c.refusedPolicy, "address refused by the policy")
		return
	}
	release, ok := e.relay.acquire(peer, e.cfg.Relay)
	if !ok {
		refuse(wire.StatusNotAllowed, &c.refusedFull, "at the relay's flow cap")
		return
	}
	defer release()
	key := relayKey{id: id, addr: ap}
	if err := e.verifyExit(ctx, key); err != nil {
		refuse(wire.StatusNotAllowed, &c.refusedUnverified, "not a verified exit")
		log.Debug("relay: exit did not verify", "exit", id.Short(), "err", err)
		return
	}
	conn, err := e.dialer.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		c.failed.Add(1)
		log.Debug("relay: dial failed", "exit", id.Short(), "err", err)
		wire.Respond(st, wire.Response{Status: wire.StatusOf(err)})
		st.Close()
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetKeepAlive(false) // the link inside pings on its own
	}
	// Open before the answer: a client that has its answer finds the
	// relayed link counted.
	c.open.Add(1)
	defer c.open.Add(-1)
	if err := wire.Respond(st, wire.Response{Status: wire.StatusOK}); err != nil {
		conn.Close()
		st.Reset()
		return
	}
	c.flows.Add(1)
	start := time.Now()
	r := e.relaySplice(st, conn)
	log.Debug("relayed link done", "exit", id.Short(), "bytes_in", r.BtoA, "bytes_out", r.AtoB,
		"dur", time.Since(start).Round(time.Millisecond))
}

// relaySplice carries the bytes both ways, under the relay's own rate cap
// and half-open bound.
func (e *Server) relaySplice(st *yamux.Stream, conn net.Conn) relay.Result {
	h := &halfOpen{timeout: e.halfOpen(), c: &e.stats.limits}
	a := &flowConn{Conn: st, half: h}
	b := &flowConn{Conn: conn, half: h}
	h.a, h.b = a, b
	if e.relay.limiter != nil {
		b.lim = e.relay.limiter
		b.charged = &e.stats.limits.rateBytes
		b.ctx, b.cancel = context.WithCancel(context.Background())
	}
	return relay.SpliceLarge(a, b, &e.stats.relay.bytes, &e.stats.relay.bytes)
}

// acquire takes a relay slot for peer, or reports that the relay or the
// client is at its cap.
func (r *relayState) acquire(peer link.PeerID, cfg RelayConfig) (release func(), ok bool) {
	maxAll, maxPeer := cfg.MaxFlows, cfg.MaxFlowsPerClient
	if maxAll <= 0 {
		maxAll = 256
	}
	if maxPeer <= 0 {
		maxPeer = 8
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.perPeer == nil {
		r.perPeer = make(map[link.PeerID]int)
	}
	if r.open >= maxAll || r.perPeer[peer] >= maxPeer {
		return nil, false
	}
	r.open++
	r.perPeer[peer]++
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.open--
		if r.perPeer[peer]--; r.perPeer[peer] <= 0 {
			delete(r.perPeer, peer)
		}
	}, true
}

// errRecentlyFailed: the exit did not verify a moment ago.
var errRecentlyFailed = errors.New("did not verify a moment ago")

// verifyExit makes sure that a swarmvpn exit holding key.id's key
// answers at key.addr and signed a valid descriptor: from the cache, or by
// linking to it and fetching its descriptor (discovery.FetchOwn), which
// proves both. A plain TCP server, a web site, another key, all fail.
func (e *Server) verifyExit(ctx context.Context, key relayKey) error {
	now := time.Now()
	r := &e.relay
	r.mu.Lock()
	if r.verified == nil {
		r.verified, r.failed = make(map[relayKey]time.Time), make(map[relayKey]time.Time)
	}
	if until, ok := r.verified[key]; ok && now.Before(until) {
		r.mu.Unlock()
		return nil
	}
	if until, ok := r.failed[key]; ok && now.Before(until) {
		r.mu.Unlock()
		return errRecentlyFailed
	}
	r.pruneLocked(now)
	r.mu.Unlock()
	select {
	case r.verifying <- struct{}{}:
		defer func() { <-r.verifying }()
	case <-ctx.Done():
		return ctx.Err()
	}
	target := link.ExitAddr{ID: key.id, Addr: key.addr.String()}
	// The fetch runs over a connection the policy allowed, with the
	// relay's own key, on a link that asks for the descriptor only: an
	// exit that serves only the clients on its allow-list answers it too.
	// An exit from before descriptor-only links refuses it: then as a
	// client.
	fctx, cancel := context.WithTimeout(ctx, orDefault(e.cfg.DialTimeout, 10*time.Second))
	defer cancel()
	s, err := discovery.FetchOwn(fctx, link.Config{Identity: e.cfg.Link.Identity, DescriptorOnly: true}, target)
	if err != nil && fctx.Err() == nil {
		s, err = discovery.FetchOwn(fctx, link.Config{Identity: e.cfg.Link.Identity}, target)
	}
	var until time.Time
	if err == nil {
		var d discovery.Descriptor
		d, err = s.Verify(key.id, time.Now())
		if err == nil {
			until = time.Now().Add(orDefault(e.cfg.Relay.VerifiedFor, 10*time.Minute))
			if d.Expires.Before(until) {
				until = d.Expires
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failed[key] = time.Now().Add(relayFailedFor)
		return fmt.Errorf("verify exit %s: %w", key.id.Short(), err)
	}
	r.verified[key] = until
	return nil
}

// pruneLocked drops expired entries, so that the maps hold only what is
// in use.
func (r *relayState) pruneLocked(now time.Time) {
	if len(r.verified)+len(r.failed) < 1024 {
		return
	}
	for k, until := range r.verified {
		if now.After(until) {
			delete(r.verified, k)
		}
	}
	for k, until := range r.failed {
		if now.After(until) {
			delete(r.failed, k)
		}
	}
}
