package pool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// ErrUnsuitable wraps why the pool will not use an exit.
var ErrUnsuitable = errors.New("exit unsuitable")

// ErrNoExit means no link to an exit is up. Flows fail closed with it: the
// client never dials a destination itself.
var ErrNoExit = errors.New("no link to an exit is up")

// Config configures a Pool. The zero value of a field means its default.
type Config struct {
	// Link holds the client's identity and link settings. Identity is
	// required.
	Link link.Config
	// Exits are the exits the user named. More arrive through AddExit (from
	// discovery and peer exchange); the pool links to the best and keeps
	// a second one warm.
	Exits []link.ExitAddr
	// DialWait is how long a new flow waits for a link that is being
	// (re)established before it fails with ErrNoExit. Default 5s.
	DialWait time.Duration
	// ResponseTimeout bounds the wait for the exit's answer to a request;
	// the exit's own dial timeout is shorter. Default 30s.
	ResponseTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential back-off between
	// attempts to reach an exit. Defaults 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Forward asks the exit for a forwarded port on every link, preferring
	// ForwardPort (0: any). The exit keeps a client's port for it across
	// reconnects.
	Forward     bool
	ForwardPort uint16
	// OnPort is called from Run with the forwarded port each time a link
	// obtains one: after every connect and reconnect. Never with 0. It
	// must not block for long.
	OnPort func(port uint16)
	// Inbound dials the local target for a connection that arrived at the
	// forwarded port from remote. Nil refuses inbound connections.
	Inbound func(ctx context.Context, remote netip.AddrPort) (net.Conn, error)
	// Require, when set, judges each exit's verified descriptor before the
	// link carries anything; an error makes the pool pass the exit over
	// (for UnsuitableRetry) and says why.
	Require func(discovery.Descriptor) error
	// UnsuitableRetry is how long an unsuitable exit is passed over before
	// its descriptor is checked again. Default 10m.
	UnsuitableRetry time.Duration
	// OnLearn is called from Run with the exits that linked exits told the
	// pool of (verified), e.g. to keep them for the next start.
	OnLearn func([]discovery.Known)
	// Hops is the number of peers a flow crosses: 1 (the default) links
	// to exits directly; 2 reaches each exit through a relay (hops.go),
	// another exit that relays.
	Hops int
	// Relays, with Hops 2, are the only relays used; empty: any known
	// exit that relays.
	Relays []link.ExitAddr
	// OnStatus is called from Run with the pool's Status each time it
	// changes (its state, exit, forwarded port or last error; not its
	// round trip), in order. It must not block for long.
	OnStatus func(Status)
	// Log receives link events. Nil discards them.
	Log *slog.Logger
}

// LinkState is the state of the pool's active link.
type LinkState string

const (
	StateConnecting LinkState = "connecting"
	StateUp         LinkState = "up"
	StateDown       LinkState = "down" // no exit reachable; retrying
)

// Status is a snapshot of the pool.
type Status struct {
	Exit  link.ExitAddr // the active exit, or the last one tried
	State LinkState
	Since time.Time     // when State began
	RTT   time.Duration // last measured link round trip, 0 if unknown
	// Relay is the relay of a two-hop path, and RelayRTT the round trip
	// to it; RTT is then the round trip through both hops.
	Relay     link.ExitAddr
	RelayRTT  time.Duration
	LastError string // why the last attempt or link failed
	// ForwardedPort is the port the exit lends this client, 0 if none.
	ForwardedPort uint16
	// ForwardError says why the active exit lent no port, when the pool
	// asked for one and got none: the exit's refusal as its status says
	// it, e.g. "no forwarded port free at the exit".
	ForwardError string
}

// Pool keeps a link to the best exit it knows, and a warm standby link to
// the next best, and opens flows over the active one. Its DialContext has
// the signature of net.Dialer's, so the proxies use it as their Dialer.
type Pool struct {
	cfg Config
	log *slog.Logger

	wake    chan struct{} // nudges Run to re-evaluate
	retired chan *link.Session
	stats   counters

	mu      sync.Mutex
	sess    *link.Session // the active link; nil unless up
	ready   chan struct{} // closed when sess becomes non-nil; replaced when it goes
	status  Status
	stopped bool
	cands   map[link.PeerID]*candidate
	order   int    // insertion counter, to keep the user's order among equals
	lease   *lease // the active link's forward; nil without one
	tcpOff  bool   // the exit is to refuse inbound TCP (SetInboundTCP)

	// For two-hop paths: relays that failed lately (until when), and the
	// round trips to relays measured when linking to them.
	relayBad map[link.PeerID]time.Time
	relayRTT map[link.PeerID]time.Duration
	hop      *hop // the active path's relay hop; nil on one hop
}

// New validates cfg and returns a Pool. Nothing is dialed until Run.
func New(cfg Config) (*Pool, error) {
	if cfg.Link.Identity == nil {
		return nil, errors.New("pool: no identity configured")
	}
	for _, d := range []*time.Duration{&cfg.DialWait, &cfg.ResponseTimeout, &cfg.MinBackoff, &cfg.MaxBackoff, &cfg.UnsuitableRetry} {
		*d = max(*d, 0) // below zero means the default, as zero does
	}
	cfg.DialWait = cmp.Or(cfg.DialWait, 5*time.Second)
	cfg.ResponseTimeout = cmp.Or(cfg.ResponseTimeout, 30*time.Second)
	cfg.MinBackoff = cmp.Or(cfg.MinBackoff, 250*time.Millisecond)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, 30*time.Second)
	cfg.UnsuitableRetry = cmp.Or(cfg.UnsuitableRetry, 10*time.Minute)
	switch {
	case cfg.Hops < 0 || cfg.Hops > 2:
		return nil, fmt.Errorf("pool: %d hops: want 1 or 2", cfg.Hops)
	case len(cfg.Relays) > 0 && cfg.Hops != 2:
		return nil, errors.New("pool: relays are for two hops")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Link.Log == nil {
		cfg.Link.Log = cfg.Log
	}
	p := &Pool{
		cfg:     cfg,
		log:     cfg.Log,
		wake:    make(chan struct{}, 1),
		retired: make(chan *link.Session, 4),
		ready:   make(chan struct{}),
		status:  Status{State: StateConnecting, Since: time.Now()},
		cands:   make(map[link.PeerID]*candidate),

		relayBad: make(map[link.PeerID]time.Time),
		relayRTT: make(map[link.PeerID]time.Duration),
	}
	for _, e := range cfg.Exits {
		p.AddExit(e, discovery.SourceStatic)
	}
	return p, nil
}

// Status returns a snapshot of the pool.
func (p *Pool) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.status
	if p.sess != nil {
		st.RTT = p.sess.RTT()
	}
	if p.hop != nil {
		st.RelayRTT = p.hop.sess.RTT()
	}
	return st
}

// session returns the live session, waiting up to DialWait for one.
func (p *Pool) session(ctx context.Context) (*link.Session, error) {
	p.mu.Lock()
	sess, ready, stopped := p.sess, p.ready, p.stopped
	p.mu.Unlock()
	if sess != nil && !sess.IsClosed() {
		return sess, nil
	}
	if stopped {
		return nil, ErrNoExit
	}
	t := time.NewTimer(p.cfg.DialWait)
	defer t.Stop()
	select {
	case <-ready:
		p.mu.Lock()
		sess = p.sess
		p.mu.Unlock()
		if sess != nil {
			return sess, nil
		}
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return nil, ErrNoExit
}

// DialContext opens a flow to addr ("host:port"; a host name is sent to the
// exit unresolved) through the exit. Errors carry a wire.Status; with no
// link up it is StatusNetworkUnreachable and nothing is sent anywhere.
func (p *Pool) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &wire.Error{Status: wire.StatusKindNotSupported, Err: fmt.Errorf("network %q", network)}
	}
	dst, err := wire.ParseAddr(addr)
	if err != nil {
		return nil, &wire.Error{Status: wire.StatusAddrTypeUnsupported, Err: err}
	}
	st, resp, err := p.open(ctx, wire.Request{Kind: wire.KindConnect, Dst: dst})
	if err != nil {
		return nil, err
	}
	return &flow{Stream: st, local: resp.Bound, remote: dst, end: p.stats.flows.Begin(wire.KindConnect)}, nil
}

// open opens a stream for req on the live link and returns it with the
// exit's successful response. Every error carries a wire.Status.
func (p *Pool) open(ctx context.Context, req wire.Request) (*yamux.Stream, wire.Response, error) {
	// A link can die between two flows before Run notices: the first flow
	// to find out retires it and tries once more on the next link.
	for retried := false; ; retried = true {
		sess, err := p.session(ctx)
		if err != nil {
			return nil, wire.Response{}, &wire.Error{Status: wire.StatusNetworkUnreachable, Err: err}
		}
		st, err := sess.OpenStream(ctx)
		if err != nil {
			if ctx.Err() != nil {
				// The flow's own deadline or cancellation, met while the
				// link waited for room: the link is fine.
				return nil, wire.Response{}, &wire.Error{Status: wire.StatusTimeout, Err: ctx.Err()}
			}
			if !linkDead(sess, err) {
				return nil, wire.Response{}, &wire.Error{Status: wire.StatusGeneralFailure, Err: err}
			}
			p.retire(sess)
			if !retried {
				continue
			}
			return nil, wire.Response{}, &wire.Error{Status: wire.StatusNetworkUnreachable, Err: fmt.Errorf("%w: %v", ErrNoExit, err)}
		}
		resp, err := wire.Call(ctx, st, req, p.cfg.ResponseTimeout)
		if err != nil {
			st.Reset()
			if sess.IsClosed() && !retried && ctx.Err() == nil {
				p.retire(sess)
				continue
			}
			return nil, wire.Response{}, err
		}
		if resp.Status != wire.StatusOK {
			st.Close()
			return nil, wire.Response{}, &wire.Error{Status: resp.Status}
		}
		return st, resp, nil
	}
}

// linkDead reports whether err from opening a stream on sess means the
// link can carry no more flows: it closed, the exit is going away, or it
// ran out of stream IDs. Anything else fails that one flow only.
func linkDead(sess *link.Session, err error) bool {
	return sess.IsClosed() || errors.Is(err, yamux.ErrSessionShutdown) ||
		errors.Is(err, yamux.ErrRemoteGoAway) || errors.Is(err, yamux.ErrStreamsExhausted)
}

// retire stops handing out sess to new flows, and tells Run, which moves
// to the standby link at once.
func (p *Pool) retire(sess *link.Session) {
	p.mu.Lock()
	active := p.sess == sess
	if active {
		p.sess = nil
		p.ready = make(chan struct{})
	}
	p.mu.Unlock()
	if active {
		select {
		case p.retired <- sess:
		default:
		}
	}
}

// flow is a stream that reports the exit-side addresses of its connection.
type flow struct {
	*yamux.Stream
	local, remote wire.Addr
	end           func()    // counts the flow closed
	closed        sync.Once // Close may be called more than once
}

// Close closes the stream, and counts the flow closed the first time.
func (f *flow) Close() error {
	f.closed.Do(f.end)
	return f.Stream.Close()
}

func (f *flow) LocalAddr() net.Addr { return tcpAddr(f.local) }

func (f *flow) RemoteAddr() net.Addr {
	if f.remote.IP.IsValid() {
		return tcpAddr(f.remote)
	}
	return f.Stream.RemoteAddr()
}

func tcpAddr(a wire.Addr) *net.TCPAddr {
	return &net.TCPAddr{IP: a.IP.AsSlice(), Port: int(a.Port)}
}
