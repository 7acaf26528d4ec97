package exitnet

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/relay"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// ExitConfig configures an Exit. The zero value of a field means its default.
type ExitConfig struct {
	// Link holds the exit's identity and link settings. Identity is required.
	Link link.Config
	// Policy decides which destinations the exit dials. Nil means the
	// default policy.
	Policy *Policy
	// Allow, when set, admits only the client peer IDs it returns true for.
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
	// UDP associations and forwards included. Default 8192.
	MaxStreamsPerClient int
	// MaxUDPPerClient caps the UDP associations one client (peer ID) may
	// hold at once. A torrent client needs one per listen socket. Default 16.
	MaxUDPPerClient int
	// UDPIdleTimeout closes a UDP association that has carried nothing
	// either way for this long. Default 5m.
	UDPIdleTimeout time.Duration
	// Ports lends forwarded ports to clients. Nil means this exit offers
	// no port forwarding.
	Ports PortLender
	// Addrs, Version, Bandwidth (bytes/s, 0 unknown) and Capacity (the
	// client count called full load; default 256) go into the exit's
	// signed descriptor.
	Addrs     []string
	Version   string
	Bandwidth int64
	Capacity  int
	// Resolver resolves destination names. Nil means net.DefaultResolver.
	Resolver *net.Resolver
	// Log receives the exit's events. Nil discards them.
	Log *slog.Logger
}

// Exit accepts links from clients and carries their flows.
type Exit struct {
	cfg    ExitConfig
	policy *Policy
	log    *slog.Logger
	dialer net.Dialer

	udp udpCounters
	fwd forwardCounters

	refusedClients, refusedStreams atomic.Uint64
	names                          nameCache
	desc                           descriptors

	mu       sync.Mutex
	sessions map[*link.Session]struct{}
	clients  map[link.PeerID]*client
}

// client is what the exit holds for one peer ID across its links.
type client struct {
	links        int // guarded by Exit.mu
	streams      atomic.Int32
	udp          atomic.Int32
	forward      atomic.Uint32 // the forwarded port, 0 if none
	udpOnForward atomic.Bool   // an association holds the forwarded port
}

func (c *client) acquireUDP(limit int) bool {
	if c.udp.Add(1) > int32(limit) {
		c.udp.Add(-1)
		return false
	}
	return true
}

func (c *client) releaseUDP() { c.udp.Add(-1) }

// NewExit validates cfg and returns an Exit ready to Serve.
func NewExit(cfg ExitConfig) (*Exit, error) {
	if cfg.Link.Identity == nil {
		return nil, errors.New("exit: no identity configured")
	}
	if cfg.Link.Log == nil {
		cfg.Link.Log = cfg.Log
	}
	e := &Exit{
		cfg:      cfg,
		policy:   cfg.Policy,
		log:      orDiscard(cfg.Log),
		sessions: make(map[*link.Session]struct{}),
		clients:  make(map[link.PeerID]*client),
	}
	e.names.resolver = cfg.Resolver
	if e.names.resolver == nil {
		e.names.resolver = net.DefaultResolver
	}
	if e.policy == nil {
		e.policy = &Policy{}
	}
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
func (e *Exit) Serve(ctx context.Context, ln net.Listener) error {
	// Links check ctx before they register, so after cancel() below no new
	// link can slip past drain.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		var conn net.Conn
		conn, err = ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				err = nil
				break
			}
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Temporary() { //nolint:staticcheck // EMFILE and friends
				e.log.Warn("accept", "err", err)
				if waitOrDone(ctx, 100*time.Millisecond) {
					continue
				}
				err = nil
			}
			break
		}
		wg.Go(func() { e.serveConn(ctx, conn) })
	}
	cancel()
	ln.Close()
	e.drain()
	wg.Wait()
	return err
}

// drain sends GoAway on every link, waits up to DrainTimeout for their
// streams to finish, then closes them.
func (e *Exit) drain() {
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

func (e *Exit) serveConn(ctx context.Context, conn net.Conn) {
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetKeepAlive(false) // the link pings on its own
	}
	sess, err := link.Server(ctx, conn, e.cfg.Link, e.admit)
	if err != nil {
		e.log.Info("link refused", "err", err)
		return
	}
	log := e.log.With("peer", sess.Peer.Short())
	e.mu.Lock()
	if ctx.Err() != nil { // shutdown began during the handshake
		e.mu.Unlock()
		sess.Close()
		return
	}
	c := e.clients[sess.Peer]
	if c == nil {
		if len(e.clients) >= e.maxClients() {
			e.mu.Unlock()
			e.refusedClients.Add(1)
			log.Warn("link refused: the exit serves as many clients as it allows", "clients", e.maxClients())
			sess.Close()
			return
		}
		c = &client{}
		e.clients[sess.Peer] = c
	}
	e.sessions[sess] = struct{}{}
	c.links++
	e.mu.Unlock()
	log.Info("link up")
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
			e.refusedStreams.Add(1)
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

func (e *Exit) serveStream(ctx context.Context, log *slog.Logger, sess *link.Session, st *yamux.Stream, c *client) {
	st.SetReadDeadline(time.Now().Add(orDefault(e.cfg.RequestTimeout, 10*time.Second)))
	req, err := wire.ReadRequest(st)
	if err != nil {
		log.Debug("bad request", "stream", st.StreamID(), "err", err)
		st.Reset()
		return
	}
	st.SetReadDeadline(time.Time{})
	switch req.Kind {
	case wire.KindConnect:
		e.connect(ctx, log, st, req.Dst)
	case wire.KindUDP:
		e.associate(ctx, log, st, c)
	case wire.KindForward:
		e.forward(ctx, log, sess, st, c, req.Dst.Port)
	case wire.KindDescriptor:
		e.serveDescriptors(st)
	default:
		respond(st, wire.Response{Status: wire.StatusKindNotSupported})
		st.Close()
	}
}

// connect dials dst and splices it to the stream.
func (e *Exit) connect(ctx context.Context, log *slog.Logger, st *yamux.Stream, dst wire.Addr) {
	start := time.Now()
	conn, err := e.dialer.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		status := wire.StatusOf(err)
		log.Debug("connect failed", "stream", st.StreamID(), "dst", dst, "err", err)
		respond(st, wire.Response{Status: status})
		st.Close()
		return
	}
	if err := respond(st, wire.Response{Status: wire.StatusOK, Bound: wire.AddrFromNet(conn.LocalAddr())}); err != nil {
		conn.Close()
		st.Reset()
		return
	}
	r := relay.Splice(st, conn)
	log.Debug("flow done", "stream", st.StreamID(), "dst", dst,
		"bytes_in", r.BtoA, "bytes_out", r.AtoB, "dur", time.Since(start).Round(time.Millisecond), "err", r.Err)
}

// admit decides in the TLS handshake whether a client may link: it must be
// on the allow-list, if there is one, and there must be room for it.
func (e *Exit) admit(id link.PeerID) bool {
	if e.cfg.Allow != nil && !e.cfg.Allow(id) {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.clients[id] == nil && len(e.clients) >= e.maxClients() {
		e.refusedClients.Add(1)
		return false
	}
	return true
}

func (e *Exit) maxClients() int {
	if e.cfg.MaxClients > 0 {
		return e.cfg.MaxClients
	}
	return 1024
}

func (e *Exit) maxStreams() int {
	if e.cfg.MaxStreamsPerClient > 0 {
		return e.cfg.MaxStreamsPerClient
	}
	return 8192
}

// refuseStream reads a stream's request and answers that the exit will not
// carry it: the client holds too many.
func (e *Exit) refuseStream(st *yamux.Stream) {
	st.SetReadDeadline(time.Now().Add(orDefault(e.cfg.RequestTimeout, 10*time.Second)))
	if _, err := wire.ReadRequest(st); err == nil {
		respond(st, wire.Response{Status: wire.StatusNotAllowed})
	}
	st.Close()
}

// ExitStats is what the exit holds now.
type ExitStats struct {
	Clients int // peer IDs with at least one link
	Links   int
	Streams int // flows, UDP associations and forwards being served
}

// Stats returns a snapshot of what the exit holds. When a client's last
// link goes, after its flows have ended, it no longer counts.
func (e *Exit) Stats() ExitStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := ExitStats{Clients: len(e.clients), Links: len(e.sessions)}
	for _, c := range e.clients {
		st.Streams += int(c.streams.Load())
	}
	return st
}

// Refused counts links refused for the client cap and flows refused for
// the per-client stream cap.
func (e *Exit) Refused() (clients, streams uint64) {
	return e.refusedClients.Load(), e.refusedStreams.Load()
}

func respond(st *yamux.Stream, resp wire.Response) error {
	var buf [wire.MaxHeaderLen]byte
	b, err := resp.AppendBinary(buf[:0])
	if err != nil {
		return err
	}
	_, err = st.Write(b)
	return err
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

// waitOrDone waits d and reports true, or reports false as soon as ctx ends.
func waitOrDone(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
