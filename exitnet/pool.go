package exitnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/relay"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// ErrNoExit means no link to an exit is up. Flows fail closed with it: the
// client never dials a destination itself.
var ErrNoExit = errors.New("no link to an exit is up")

// PoolConfig configures a Pool. The zero value of a field means its default.
type PoolConfig struct {
	// Link holds the client's identity and link settings. Identity is
	// required.
	Link link.Config
	// Exit is the exit to keep a link to.
	Exit link.ExitAddr
	// DialWait is how long a new flow waits for a link that is being
	// (re)established before it fails with ErrNoExit. Default 5s.
	DialWait time.Duration
	// ResponseTimeout bounds the wait for the exit's answer to a request;
	// the exit's own dial timeout is shorter. Default 30s.
	ResponseTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential back-off between
	// attempts to reach the exit. Defaults 250ms and 30s.
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
	// Log receives link events. Nil discards them.
	Log *slog.Logger
}

// LinkState is the state of the pool's link.
type LinkState string

const (
	StateConnecting LinkState = "connecting"
	StateUp         LinkState = "up"
	StateDown       LinkState = "down" // waiting before the next attempt
)

// PoolStatus is a snapshot of the pool.
type PoolStatus struct {
	Exit      link.ExitAddr
	State     LinkState
	Since     time.Time     // when State began
	RTT       time.Duration // last measured link round trip, 0 if unknown
	LastError string        // why the last attempt or link failed
	// ForwardedPort is the port the exit lends this client, 0 if none.
	ForwardedPort uint16
}

// Pool keeps a link to an exit and opens flows over it. Its DialContext has
// the signature of net.Dialer's, so the proxies use it as their Dialer.
type Pool struct {
	cfg PoolConfig
	log *slog.Logger

	mu      sync.Mutex
	sess    *link.Session // nil unless up
	ready   chan struct{} // closed when sess becomes non-nil; replaced when it goes
	status  PoolStatus
	stopped bool
}

// NewPool validates cfg and returns a Pool. Nothing is dialed until Run.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if cfg.Link.Identity == nil {
		return nil, errors.New("pool: no identity configured")
	}
	if cfg.Exit.Addr == "" {
		return nil, errors.New("pool: no exit configured")
	}
	if cfg.Link.Log == nil {
		cfg.Link.Log = cfg.Log
	}
	return &Pool{
		cfg:    cfg,
		log:    orDiscard(cfg.Log).With("exit", cfg.Exit.ID.Short()),
		ready:  make(chan struct{}),
		status: PoolStatus{Exit: cfg.Exit, State: StateConnecting, Since: time.Now()},
	}, nil
}

// Run keeps a link to the exit up until ctx is cancelled, reconnecting with
// exponential back-off and jitter whenever it fails. It returns after the
// link is closed.
func (p *Pool) Run(ctx context.Context) error {
	minB := orDefault(p.cfg.MinBackoff, 250*time.Millisecond)
	maxB := orDefault(p.cfg.MaxBackoff, 30*time.Second)
	backoff := minB
	for ctx.Err() == nil {
		p.setState(StateConnecting, nil)
		sess, err := p.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			p.setState(StateDown, err)
			// Full jitter keeps many clients of one restarted exit from
			// returning in lockstep.
			wait := backoff/2 + rand.N(backoff/2+1)
			p.log.Warn("exit unreachable", "err", err, "retry_in", wait.Round(time.Millisecond))
			if !waitOrDone(ctx, wait) {
				break
			}
			backoff = min(backoff*2, maxB)
			continue
		}
		backoff = minB
		p.serveLink(ctx, sess)
	}
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	return nil
}

// serveLink runs one established link until it closes or ctx ends: the
// forward is requested before flows may use the link, so that the first UDP
// association gets the forwarded port, and inbound streams are served.
func (p *Pool) serveLink(ctx context.Context, sess *link.Session) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var port uint16
	if p.cfg.Forward {
		port = p.requestForward(ctx, sess)
	}
	wg.Go(func() { p.acceptInbound(ctx, sess) })
	p.up(sess, port)
	p.log.Info("link up", "addr", p.cfg.Exit.Addr, "rtt", sess.RTT().Round(time.Microsecond))
	if port != 0 && p.cfg.OnPort != nil {
		p.cfg.OnPort(port)
	}
	select {
	case <-sess.CloseChan():
		p.down(sess, errors.New("link closed"))
		p.log.Warn("link down; reconnecting")
	case <-ctx.Done():
		p.down(sess, nil)
		sess.GoAway()
		sess.Close()
	}
}

// requestForward asks the exit for a port and holds the forward open for
// the link's life. It returns 0 when the exit lends none.
func (p *Pool) requestForward(ctx context.Context, sess *link.Session) uint16 {
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return 0
	}
	req := wire.Request{Kind: wire.KindForward, Dst: wire.Addr{Port: p.cfg.ForwardPort}}
	resp, err := request(ctx, st, req, orDefault(p.cfg.ResponseTimeout, 30*time.Second))
	switch {
	case err != nil:
		st.Reset()
		p.log.Warn("forward request failed", "err", err)
		return 0
	case resp.Status == wire.StatusKindNotSupported:
		st.Close()
		p.log.Warn("this exit offers no port forwarding: the torrent client will not be connectable; choose an exit that forwards ports")
		return 0
	case resp.Status != wire.StatusOK || resp.Bound.Port == 0:
		st.Close()
		p.log.Warn("exit refused to forward a port", "status", resp.Status)
		return 0
	}
	// The stream stays open, held by the session, as long as the link:
	// closing it would end the forward.
	p.log.Info("forwarded port", "port", resp.Bound.Port, "public", net.JoinHostPort(exitHost(p.cfg.Exit.Addr), strconv.Itoa(int(resp.Bound.Port))))
	return resp.Bound.Port
}

func exitHost(hostport string) string {
	host, _, _ := net.SplitHostPort(hostport)
	return host
}

// acceptInbound serves the streams the exit opens: connections that
// arrived at the forwarded port.
func (p *Pool) acceptInbound(ctx context.Context, sess *link.Session) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		wg.Go(func() { p.inbound(ctx, st) })
	}
}

func (p *Pool) inbound(ctx context.Context, st *yamux.Stream) {
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := wire.ReadRequest(st)
	if err != nil {
		st.Reset()
		return
	}
	st.SetReadDeadline(time.Time{})
	if req.Kind != wire.KindInbound || p.cfg.Inbound == nil || !req.Dst.IP.IsValid() {
		respond(st, wire.Response{Status: wire.StatusKindNotSupported})
		st.Close()
		return
	}
	remote := netip.AddrPortFrom(req.Dst.IP, req.Dst.Port)
	conn, err := p.cfg.Inbound(ctx, remote)
	if err != nil {
		respond(st, wire.Response{Status: wire.StatusOf(err)})
		st.Close()
		p.log.Debug("inbound: local target refused", "dst", remote, "err", err)
		return
	}
	if err := respond(st, wire.Response{Status: wire.StatusOK, Bound: wire.AddrFromNet(conn.LocalAddr())}); err != nil {
		conn.Close()
		st.Reset()
		return
	}
	relay.Splice(st, conn)
}

// dial establishes a link and checks it with one ping: in TLS 1.3 a client
// that the exit refuses only learns so on first use.
func (p *Pool) dial(ctx context.Context) (*link.Session, error) {
	sess, err := link.Dial(ctx, p.cfg.Link, p.cfg.Exit)
	if err != nil {
		return nil, err
	}
	if _, err := sess.Ping(); err != nil {
		sess.Close()
		return nil, fmt.Errorf("exit closed the link after the handshake (is this client on its allow-list?): %w", err)
	}
	return sess, nil
}

func (p *Pool) up(sess *link.Session, port uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sess = sess
	close(p.ready)
	p.status.State, p.status.Since, p.status.LastError = StateUp, time.Now(), ""
	p.status.ForwardedPort = port
}

func (p *Pool) down(sess *link.Session, why error) {
	p.retire(sess)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.State, p.status.Since, p.status.ForwardedPort = StateDown, time.Now(), 0
	if why != nil {
		p.status.LastError = why.Error()
	}
}

func (p *Pool) setState(s LinkState, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.State, p.status.Since = s, time.Now()
	if err != nil {
		p.status.LastError = err.Error()
	}
}

// Status returns a snapshot of the pool.
func (p *Pool) Status() PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.status
	if p.sess != nil {
		st.RTT = p.sess.RTT()
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
	t := time.NewTimer(orDefault(p.cfg.DialWait, 5*time.Second))
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
	return &flow{Stream: st, local: resp.Bound, remote: dst}, nil
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
			p.retire(sess)
			if !retried && ctx.Err() == nil {
				continue
			}
			return nil, wire.Response{}, &wire.Error{Status: wire.StatusNetworkUnreachable, Err: fmt.Errorf("%w: %v", ErrNoExit, err)}
		}
		resp, err := request(ctx, st, req, orDefault(p.cfg.ResponseTimeout, 30*time.Second))
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

// retire stops handing out sess to new flows. Run notices when it closes
// and reconnects.
func (p *Pool) retire(sess *link.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sess == sess {
		p.sess = nil
		p.ready = make(chan struct{})
	}
}

// request sends req on st and reads the exit's response.
func request(ctx context.Context, st *yamux.Stream, req wire.Request, timeout time.Duration) (wire.Response, error) {
	var buf [wire.MaxHeaderLen]byte
	b, err := req.AppendBinary(buf[:0])
	if err != nil {
		return wire.Response{}, &wire.Error{Status: wire.StatusAddrTypeUnsupported, Err: err}
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	st.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()) })
	defer stop()
	if _, err := st.Write(b); err != nil {
		return wire.Response{}, &wire.Error{Status: wire.StatusNetworkUnreachable, Err: err}
	}
	resp, err := wire.ReadResponse(st)
	if err != nil {
		// No answer from the exit means the link failed, not the
		// destination: a timeout is a timeout, anything else unreachable.
		status := wire.StatusNetworkUnreachable
		if wire.StatusOf(err) == wire.StatusTimeout {
			status = wire.StatusTimeout
		}
		return wire.Response{}, &wire.Error{Status: status, Err: fmt.Errorf("no answer from the exit: %w", err)}
	}
	if !stop() {
		return wire.Response{}, &wire.Error{Status: wire.StatusTimeout, Err: ctx.Err()}
	}
	st.SetDeadline(time.Time{})
	return resp, nil
}

// flow is a stream that reports the exit-side addresses of its connection.
type flow struct {
	*yamux.Stream
	local, remote wire.Addr
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
