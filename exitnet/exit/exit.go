package exit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"golang.org/x/time/rate"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/listener"
	"github.com/swarmvpn/swarmvpn/internal/netaddr"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Config configures an Exit. The zero value of a field means its default.
type Config struct {
	// Link holds the exit's identity and link settings. Identity is required.
	Link link.Config
	// Policy decides which destinations the exit dials. Nil means the
	// default policy. The exit adds to it its own addresses (Policy.Own),
	// which it keeps up to date, and its forwarded port range
	// (Policy.OwnPorts).
	Policy *policy.Policy
	// OwnAddrs are addresses of the exit beyond those of its interfaces
	// and the hosts in Addrs, refused as destinations like them.
	OwnAddrs []netip.Addr
	// Listeners are the addresses other listeners of the exit's process
	// are on (its status page, its metrics). Flows to them, as to the link
	// listener and the DHT socket, are refused whatever the policy allows;
	// to one on an unspecified address, on loopback and on every address
	// of the exit.
	Listeners []netip.AddrPort
	// Allow, when set, admits only the client peer IDs it returns true for.
	// SetAllow replaces it while the exit runs.
	Allow func(link.PeerID) bool
	// DialTimeout bounds name resolution plus connecting to a destination.
	// Default 10s.
	DialTimeout time.Duration
	// RequestTimeout bounds the wait for a stream's request header.
	// Default 10s.
	RequestTimeout time.Duration
	// DrainTimeout is how long open flows may continue after shutdown
	// begins. Default 2s.
	DrainTimeout time.Duration
	// MaxClients caps the clients (peer IDs) the exit serves at once.
	// Default 1024.
	MaxClients int
	// MaxStreamsPerClient caps the flows one client may have open at once,
	// UDP associations and forwards included. Default 4096, well above what
	// a torrent client opens (libtorrent's default is 200 connections).
	MaxStreamsPerClient int
	// MaxUDPPerClient caps the UDP associations one client (peer ID) may
	// hold at once. A torrent client needs one per listen socket. Default 16.
	MaxUDPPerClient int
	// UDPIdleTimeout closes a UDP association that has carried nothing
	// either way for this long. Default 5m.
	UDPIdleTimeout time.Duration
	// RatePerClient caps the bytes per second the exit relays for one
	// client (peer ID), both directions, all its TCP flows, forwarded
	// connections and UDP datagrams together. 0 means unlimited.
	RatePerClient int64
	// MaxBufferPerClient caps the memory one client's links together may
	// reserve at the exit in receive windows beyond each stream's first
	// 256 KiB (stream windows stop growing there), and, separately, in the
	// large buffers its moving flows read into, about 64 KiB a direction
	// (flows past it read into small buffers). Default 64 MiB.
	MaxBufferPerClient int64
	// MaxHandshakes caps the connections whose TLS handshake is not
	// finished, in all; MaxHandshakesPerSource, from one source address
	// (an IPv6 one by its /64). Past either, the oldest unfinished one is
	// closed to make room. Defaults 256 and 16.
	MaxHandshakes, MaxHandshakesPerSource int
	// HalfOpenTimeout closes a TCP flow when, after one direction has
	// ended, the other has carried nothing for this long. Default 2m.
	HalfOpenTimeout time.Duration
	// Ports lends forwarded ports to clients. Nil means this exit offers
	// no port forwarding.
	Ports PortLender
	// NAT, when set, maps the link port and every lent port on the router
	// in front of the exit; the exit then publishes (and tells clients) the
	// external ports, and checks with KnownExits that the internet reaches
	// it. Nil maps nothing.
	NAT PortMapper
	// MaxInboundPerClient caps the connections arriving on a client's
	// forwarded port that the exit carries to it at once; more are reset.
	// Default 512, well below the flow cap: strangers open them.
	MaxInboundPerClient int
	// InboundRatePerAddr caps the new connections per second one remote
	// address (an IPv6 one by its /64) may open to the exit's forwarded
	// ports, all together, with a burst of four seconds' worth; more are
	// reset. Default 8.
	InboundRatePerAddr int
	// Addrs, Version, Bandwidth (bytes/s, 0 unknown) and Capacity (the
	// client count called full load; default 256) go into the exit's
	// signed descriptor.
	Addrs     []string
	Version   string
	Bandwidth int64
	Capacity  int
	// MDNS advertises the exit on the LAN while it serves. Without
	// multicast (a container, a VPS) that fails with a warning only.
	MDNS bool
	// DHT, when set, announces and publishes the exit on the Mainline DHT
	// while it serves (see dht.go).
	DHT *DHTConfig
	// KnownExits are other exits whose descriptors this exit fetches (at
	// start, then every half hour) and passes on to its clients.
	KnownExits []link.ExitAddr
	// Fallback is the web site shown to every connection that is not an
	// admitted client (a browser, a prober, a refused client): the URL of
	// a real site to reverse-proxy to, e.g. http://127.0.0.1:8080. Empty
	// means a small built-in page.
	Fallback string
	// Relay shapes the relay role (relay.go): on by default.
	Relay RelayConfig
	// Resolver resolves destination names. Nil means net.DefaultResolver.
	Resolver *net.Resolver
	// Log receives the exit's events. Nil discards them.
	Log *slog.Logger
}

// Server is an exit: it accepts links from clients and carries their flows.
type Server struct {
	cfg    Config
	policy *policy.Policy
	log    *slog.Logger
	dialer net.Dialer

	stats       counters
	refusals    refusalLog
	allow       atomic.Pointer[func(link.PeerID) bool] // nil: any client
	inboundRate *addrRate
	handshakes  connBudget
	visitors    connBudget // connections the web site serves

	names    nameCache
	desc     descriptors
	pub      public
	reaching chan struct{} // reach requests being answered
	isPublic func(netip.Addr) bool
	own      *policy.OwnAddrs // the exit's own addresses, in e.policy.Own
	ownAddrs ownAddrs         // keeps own up to date
	site     *site            // what connections that are not clients see
	dht      *dhtState        // nil when not on the DHT
	relay    relayState

	descOnly connBudget // descriptor-only links open now
	// published reports whether the exit's descriptor is public now (on
	// the DHT); tests replace it before Serve.
	published func() bool

	mu       sync.Mutex
	sessions map[*link.Session]struct{}
	clients  map[link.PeerID]*client
}

// maxVisitors and maxVisitorsPerSource bound the connections the exit's web
// site serves at once, in all and from one source address: past them the
// oldest visitor is closed.
const (
	maxVisitors          = 512
	maxVisitorsPerSource = 16
)

// maxLinksPerClient caps the links one peer ID may hold to an exit at once.
// A client needs one, and for a few seconds two while it replaces a link
// the exit has not yet seen die; every link costs the exit its TLS and
// multiplexer state and goroutines.
const maxLinksPerClient = 4

// client is what the exit holds for one peer ID across its links.
type client struct {
	links        int           // guarded by Exit.mu
	limiter      *rate.Limiter // nil: no rate limit
	memory       *clientMemory // receive windows on all its links
	buffers      *flowBuffers  // its moving flows' large read buffers
	streams      atomic.Int32
	inbound      atomic.Int32  // connections from its forwarded port being carried
	carried      atomic.Uint64 // bytes relayed for it, both ways, TCP and UDP
	udp          atomic.Int32
	forward      atomic.Uint32 // the forwarded port, 0 if none
	udpOnForward atomic.Bool   // an association holds the forwarded port
	udpProbe     atomic.Uint32 // the port of a probe's socket on 127.0.0.1, 0 if none
	reaching     atomic.Bool   // a reach request of this client is being answered
}

func (c *client) acquireUDP(limit int) bool {
	if c.udp.Add(1) > int32(limit) {
		c.udp.Add(-1)
		return false
	}
	return true
}

func (c *client) releaseUDP() { c.udp.Add(-1) }

// New validates cfg and returns an Exit ready to Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Link.Identity == nil {
		return nil, errors.New("exit: no identity configured")
	}
	if cfg.Link.Log == nil {
		cfg.Link.Log = cfg.Log
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"dial timeout", cfg.DialTimeout}, {"request timeout", cfg.RequestTimeout}, {"drain timeout", cfg.DrainTimeout},
		{"UDP idle timeout", cfg.UDPIdleTimeout}, {"half-open timeout", cfg.HalfOpenTimeout}} {
		if d.v < 0 {
			return nil, fmt.Errorf("exit: negative %s %v", d.name, d.v)
		}
	}
	for _, l := range []struct {
		name string
		n    int64
	}{{"rate per client", cfg.RatePerClient}, {"buffer per client", cfg.MaxBufferPerClient},
		{"client cap", int64(cfg.MaxClients)}, {"flow cap", int64(cfg.MaxStreamsPerClient)},
		{"UDP association cap", int64(cfg.MaxUDPPerClient)}, {"inbound cap", int64(cfg.MaxInboundPerClient)},
		{"inbound rate", int64(cfg.InboundRatePerAddr)}, {"handshake cap", int64(cfg.MaxHandshakes)},
		{"handshake cap per source", int64(cfg.MaxHandshakesPerSource)}} {
		if l.n < 0 {
			return nil, fmt.Errorf("exit: negative %s %d", l.name, l.n)
		}
	}
	name := cfg.Link.ServerName
	if name == "" {
		name = link.HostName(cfg.Link.Identity.ID())
	}
	site, err := newSite(cfg.Fallback, name, orDiscard(cfg.Log))
	if err != nil {
		return nil, err
	}
	e := &Server{
		site:     site,
		cfg:      cfg,
		policy:   cfg.Policy,
		log:      orDiscard(cfg.Log),
		sessions: make(map[*link.Session]struct{}),
		clients:  make(map[link.PeerID]*client),
		reaching: make(chan struct{}, maxReachAnswering),
		isPublic: netaddr.IsPublic,
	}
	e.published = e.publishing
	if cfg.Allow != nil {
		e.allow.Store(&cfg.Allow)
	}
	if cfg.Relay.MaxFlows < 0 || cfg.Relay.MaxFlowsPerClient < 0 || cfg.Relay.Rate < 0 || cfg.Relay.VerifiedFor < 0 {
		return nil, errors.New("exit: negative relay cap")
	}
	e.relay.verifying = make(chan struct{}, maxRelayVerifying)
	if cfg.Relay.Rate > 0 {
		e.relay.limiter = newLimiter(cfg.Relay.Rate)
	}
	e.inboundRate = newAddrRate(cmp.Or(cfg.InboundRatePerAddr, 8))
	e.handshakes.max = cmp.Or(cfg.MaxHandshakes, 256)
	e.handshakes.perSource = cmp.Or(cfg.MaxHandshakesPerSource, 16)
	// A browser opens a handful of connections to a site; a prober, one or
	// two. Visitors beyond these are the ones worth shedding.
	e.visitors.max, e.visitors.perSource = maxVisitors, maxVisitorsPerSource
	e.descOnly.max, e.descOnly.perSource = maxDescriptorOnly, maxDescriptorOnlyPerSource
	e.names.resolver = cfg.Resolver
	if e.names.resolver == nil {
		e.names.resolver = net.DefaultResolver
	}
	// A copy: the exit adds its own addresses and forwarded ports.
	pol := policy.Policy{}
	if cfg.Policy != nil {
		pol = *cfg.Policy
	}
	e.own = new(policy.OwnAddrs)
	pol.Own = e.own
	if cfg.Ports != nil {
		lo, hi := cfg.Ports.Range()
		pol.OwnPorts = append(slices.Clip(pol.OwnPorts), policy.PortRange{Lo: lo, Hi: hi})
	}
	e.policy = &pol
	e.ownAddrs.e = e
	if cfg.DHT != nil {
		var err error
		if e.dht, err = newDHT(cfg); err != nil {
			return nil, err
		}
	}
	e.ownAddrs.refresh(context.Background())
	e.dialer = net.Dialer{
		Timeout:  orDefault(cfg.DialTimeout, 10*time.Second),
		Resolver: cfg.Resolver,
		// The policy is enforced here, on the address actually being
		// connected after resolution: a name that resolves to a refused
		// address is refused, and each address of a name is judged alone.
		ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &wire.Error{Status: wire.StatusNotAllowed, Err: err}
			}
			return e.policy.Check(ap.Addr(), ap.Port())
		},
	}
	return e, nil
}

// Serve accepts links on ln until ctx is cancelled. Then it stops accepting,
// tells every client to go away, lets open flows drain for DrainTimeout, and
// closes every link. It returns after all its goroutines have ended.
func (e *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Links check ctx before they register, so after cancel() below no new
	// link can slip past drain.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	e.ownAddrs.listen(ctx, ln.Addr())
	wg.Go(func() { e.ownAddrs.watch(ctx) })
	if e.cfg.MDNS {
		wg.Go(func() { e.advertise(ctx, ln.Addr()) })
	}
	if len(e.cfg.KnownExits) > 0 {
		wg.Go(func() { e.learnKnown(ctx) })
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
		wg.Go(func() {
			e.MapLink(ctx, uint16(tcp.Port))
			e.watchNAT(ctx)
		})
	}
	if e.dht != nil {
		wg.Go(func() { e.runDHT(ctx, ln.Addr()) })
	}
	// Each connection is counted as a pending handshake as it is accepted,
	// before its goroutine starts, so that a flood sheds its oldest
	// handshakes rather than piling up goroutines.
	e.site.start(&wg, e.log)
	pending := &pendingListener{Listener: ln, h: &e.handshakes}
	err := listener.Accept(ctx, pending, &wg, e.log, func(conn net.Conn) {
		pc := conn.(*pendingConn)
		e.serveConn(ctx, pc.Conn, pc.hs)
	})
	cancel()
	e.site.close()
	e.drain()
	wg.Wait()
	return err
}

// drain sends GoAway on every link, waits up to DrainTimeout for their
// streams to finish, then closes them.
func (e *Server) drain() {
	e.mu.Lock()
	sessions := make([]*link.Session, 0, len(e.sessions))
	for s := range e.sessions {
		sessions = append(sessions, s)
	}
	e.mu.Unlock()
	for _, s := range sessions {
		s.GoAway()
	}
	deadline := time.NewTimer(orDefault(e.cfg.DrainTimeout, 2*time.Second))
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, s := range sessions {
	wait:
		for s.NumStreams() > 0 {
			select {
			case <-deadline.C:
				break wait
			case <-s.CloseChan():
				break wait
			case <-tick.C:
			}
		}
		s.Close()
	}
}

func (e *Server) serveConn(ctx context.Context, conn net.Conn, hs *budgeted) {
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetKeepAlive(false) // the link pings on its own
	}
	lcfg := e.cfg.Link
	mem := new(linkMemory)
	lcfg.MemoryManager = mem.span
	lcfg.Fallback = func(c net.Conn, proto string) {
		// A visitor is no longer a handshake in progress: it must not
		// hold one of the slots that clients' handshakes need, and
		// visitors have a budget of their own.
		e.handshakes.end(hs)
		v := e.visitors.begin(c)
		defer e.visitors.end(v)
		e.site.serve(c, proto)
	}
	lcfg.H2Preface = e.site.preface
	lcfg.AdmitDescriptorOnly = e.admitDescriptorOnly
	admitted := true // admit runs in this goroutine, inside the handshake
	sess, err := link.Server(ctx, conn, lcfg, func(id link.PeerID) bool {
		admitted = e.admit(id)
		return admitted
	})
	e.handshakes.end(hs)
	if err != nil {
		switch {
		case errors.Is(err, link.ErrFallback):
			// Probes, browsers, replays and refused clients alike; a
			// refusal by admit is also counted by its reason.
			e.stats.fallback.Add(1)
			e.log.Debug("served as a web site", "err", err)
			return
		case admitted:
			e.stats.refusedHandshake.Add(1)
		}
		e.log.Debug("link refused", "err", err) // scanners and probes too: counted, not logged
		return
	}
	if sess.DescriptorOnly {
		e.serveDescriptorOnly(ctx, sess)
		return
	}
	log := e.log.With("peer", sess.Peer.Short())
	e.mu.Lock()
	if ctx.Err() != nil || !e.allowed(sess.Peer) { // shutdown began, or the allow-list changed, during the handshake
		e.mu.Unlock()
		sess.Close()
		return
	}
	// The handshake admitted this client, but others may have taken the
	// room meanwhile.
	if err := e.roomLocked(sess.Peer); err != nil {
		e.mu.Unlock()
		log.Warn("link refused: " + err.Error())
		sess.Close()
		return
	}
	c := e.clients[sess.Peer]
	if c == nil {
		c = &client{memory: newClientMemory(e.maxBuffer(), &e.stats.limits),
			buffers: &flowBuffers{limit: e.maxBuffer(), c: &e.stats.limits}}
		if e.cfg.RatePerClient > 0 {
			c.limiter = newLimiter(e.cfg.RatePerClient)
		}
		e.clients[sess.Peer] = c
	}
	e.sessions[sess] = struct{}{}
	c.links++
	e.mu.Unlock()
	mem.client.Store(c.memory)
	e.stats.linksAccepted.Add(1)
	log.Info("link up")
	log.Debug("link from", "addr", sess.Conn.RemoteAddr().String())
	start := time.Now()

	var wg sync.WaitGroup
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			break
		}
		if c.streams.Add(1) > int32(e.maxStreams()) {
			// Over the cap: answer, rather than reset, so the client's
			// application gets a reason.
			c.streams.Add(-1)
			e.stats.refusedFlows.Add(1)
			wg.Go(func() { e.refuseStream(st) })
			continue
		}
		wg.Go(func() {
			defer c.streams.Add(-1)
			e.serveStream(ctx, log, sess, st, c)
		})
	}
	sess.Close()
	wg.Wait()
	e.mu.Lock()
	delete(e.sessions, sess)
	if c.links--; c.links == 0 {
		delete(e.clients, sess.Peer)
	}
	e.mu.Unlock()
	log.Info("link down", "dur", time.Since(start).Round(time.Millisecond))
}

func (e *Server) serveStream(ctx context.Context, log *slog.Logger, sess *link.Session, st *yamux.Stream, c *client) {
	st.SetReadDeadline(time.Now().Add(orDefault(e.cfg.RequestTimeout, 10*time.Second)))
	req, err := wire.ReadRequest(st)
	if err != nil {
		log.Debug("bad request", "stream", st.StreamID(), "err", err)
		st.Reset()
		return
	}
	st.SetReadDeadline(time.Time{})
	switch req.Kind {
	case wire.KindConnect, wire.KindUDP, wire.KindForward, wire.KindDescriptor:
		defer e.stats.flows.Begin(req.Kind)()
	}
	switch req.Kind {
	case wire.KindConnect:
		e.connect(ctx, log, st, req.Dst, c)
	case wire.KindUDP:
		e.associate(ctx, log, st, c)
	case wire.KindForward:
		e.forward(ctx, log, sess, st, c, req.Dst.Port)
	case wire.KindDescriptor:
		e.serveDescriptors(st)
	case wire.KindReach:
		e.answerReach(ctx, log, sess, st, c, req.Dst)
	case wire.KindRelay:
		e.serveRelay(ctx, log, st, sess.Peer, req.Dst)
	default:
		wire.Respond(st, wire.Response{Status: wire.StatusKindNotSupported})
		st.Close()
	}
}

// connect dials dst and splices it to the stream.
func (e *Server) connect(ctx context.Context, log *slog.Logger, st *yamux.Stream, dst wire.Addr, c *client) {
	start := time.Now()
	conn, err := e.dialer.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		status := wire.StatusOf(err)
		if status == wire.StatusNotAllowed {
			e.stats.policyRefusals.Add(1)
			e.refusals.refused(e.log)
		}
		log.Debug("connect failed", "stream", st.StreamID(), "dst", dst, "err", err)
		wire.Respond(st, wire.Response{Status: status})
		st.Close()
		return
	}
	if err := wire.Respond(st, wire.Response{Status: wire.StatusOK, Bound: wire.AddrFromNet(conn.LocalAddr())}); err != nil {
		conn.Close()
		st.Reset()
		return
	}
	r := e.splice(st, conn, c)
	log.Debug("flow done", "stream", st.StreamID(), "dst", dst,
		"bytes_in", r.BtoA, "bytes_out", r.AtoB, "dur", time.Since(start).Round(time.Millisecond), "err", r.Err)
}

// admit decides in the TLS handshake whether a client may link: it must be
// on the allow-list, if there is one, and there must be room for it.
func (e *Server) admit(id link.PeerID) bool {
	if !e.allowed(id) {
		e.stats.refusedAllowList.Add(1)
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.roomLocked(id) == nil
}

// roomLocked says why one more link of client id does not fit, if it does
// not: a new client needs a free client slot, a known one a free link slot.
// It counts each refusal by its reason. e.mu must be held.
func (e *Server) roomLocked(id link.PeerID) error {
	c := e.clients[id]
	switch {
	case c == nil && len(e.clients) >= e.maxClients():
		e.stats.refusedClients.Add(1)
		return fmt.Errorf("the exit serves as many clients as it allows (%d)", e.maxClients())
	case c != nil && c.links >= maxLinksPerClient:
		e.stats.limits.linksRefused.Add(1)
		return fmt.Errorf("the client holds as many links as it may (%d)", maxLinksPerClient)
	}
	return nil
}

// allowed reports whether the allow-list, if there is one, holds id.
func (e *Server) allowed(id link.PeerID) bool {
	f := e.allow.Load()
	return f == nil || (*f)(id)
}

// SetAllow replaces the allow-list: from now on only clients allow returns
// true for are admitted (nil admits any), and the links of clients it
// refuses are closed at once. It returns how many links it closed.
func (e *Server) SetAllow(allow func(link.PeerID) bool) int {
	e.mu.Lock()
	if allow == nil {
		e.allow.Store(nil)
	} else {
		e.allow.Store(&allow)
	}
	var drop []*link.Session
	if allow != nil {
		for s := range e.sessions {
			if !allow(s.Peer) {
				drop = append(drop, s)
			}
		}
	}
	e.mu.Unlock()
	for _, s := range drop {
		e.log.Info("link closed: client no longer on the allow-list", "peer", s.Peer.Short())
		e.stats.limits.clientsDropped.Add(1)
		s.Close()
	}
	return len(drop)
}

func (e *Server) maxBuffer() int64 {
	if e.cfg.MaxBufferPerClient > 0 {
		return e.cfg.MaxBufferPerClient
	}
	return 64 << 20
}

func (e *Server) halfOpen() time.Duration { return orDefault(e.cfg.HalfOpenTimeout, 2*time.Minute) }

func (e *Server) maxClients() int {
	if e.cfg.MaxClients > 0 {
		return e.cfg.MaxClients
	}
	return 1024
}

func (e *Server) maxStreams() int {
	if e.cfg.MaxStreamsPerClient > 0 {
		return e.cfg.MaxStreamsPerClient
	}
	return 4096
}

// refuseStream reads a stream's request and answers that the exit will not
// carry it: the client holds too many.
func (e *Server) refuseStream(st *yamux.Stream) {
	st.SetReadDeadline(time.Now().Add(orDefault(e.cfg.RequestTimeout, 10*time.Second)))
	if _, err := wire.ReadRequest(st); err == nil {
		wire.Respond(st, wire.Response{Status: wire.StatusNotAllowed})
	}
	st.Close()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
