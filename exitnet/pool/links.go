package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Roles of a candidate's link.
const (
	RoleActive  = "active"
	RoleStandby = "standby"
)

// probeWidth is how many exits are dialed at once when the pool has no
// link: the first to answer becomes active, the second the standby. Since
// a handshake takes a few round trips, the nearest exit tends to win.
const probeWidth = 3

// reselectWindow is how long after a link comes up a clearly nearer exit
// may still take its place.
const reselectWindow = 10 * time.Second

// reselectMargin is how much nearer that exit must be, besides half the
// round trip, so that jitter between equally near exits moves nothing.
const reselectMargin = 20 * time.Millisecond

// candidate is an exit the pool knows of. Guarded by Pool.mu; only Run
// changes the link fields.
type candidate struct {
	exit     link.ExitAddr
	source   discovery.Source
	added    time.Time
	order    int
	rtt      time.Duration // from the last link's first ping
	failures int
	nextTry  time.Time
	lastErr  string

	desc    *discovery.Descriptor // from the last link, verified
	dialing bool
	sess    *link.Session
	role    string // RoleActive, RoleStandby or "" (linked but spare, or not linked)
	upAt    time.Time
}

// ExitInfo describes a known exit, for `swarmvpn peers`.
type ExitInfo struct {
	Exit    link.ExitAddr
	Source  discovery.Source
	Role    string // active, standby, or empty
	RTT     time.Duration
	Age     time.Duration // since the pool learned of it
	LastErr string
	// Caps and Load are from the exit's descriptor; nil and 0 before the
	// pool has linked to it.
	Caps []string
	Load float64
}

// AddExit tells the pool of an exit. An exit it already knows keeps its
// state (and its first source).
func (p *Pool) AddExit(e link.ExitAddr, source discovery.Source) {
	p.mu.Lock()
	if c, ok := p.cands[e.ID]; ok {
		if c.sess == nil && !c.dialing {
			c.exit.Addr = e.Addr // the exit may have moved
		}
		p.mu.Unlock()
		return
	}
	p.order++
	p.cands[e.ID] = &candidate{exit: e, source: source, added: time.Now(), order: p.order}
	p.mu.Unlock()
	p.nudge()
}

// Exits lists the exits the pool knows, the active one first.
func (p *Pool) Exits() []ExitInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	out := make([]ExitInfo, 0, len(p.cands))
	for _, c := range p.ranked() {
		info := ExitInfo{Exit: c.exit, Source: c.source, Role: c.role, RTT: c.rtt,
			Age: now.Sub(c.added).Round(time.Second), LastErr: c.lastErr}
		if c.desc != nil {
			info.Caps, info.Load = c.desc.Caps(), c.desc.Load
		}
		out = append(out, info)
	}
	slices.SortStableFunc(out, func(a, b ExitInfo) int { return roleRank(a.Role) - roleRank(b.Role) })
	return out
}

func roleRank(r string) int {
	switch r {
	case RoleActive:
		return 0
	case RoleStandby:
		return 1
	}
	return 2
}

func (p *Pool) nudge() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// linkEvent reports the end of a dial or of a link to Run.
type linkEvent struct {
	c      *candidate
	sess   *link.Session        // the new link; nil when err is set or down
	rtt    time.Duration        // the new link's first ping
	desc   discovery.Descriptor // the new link's exit, verified
	others []discovery.Known    // exits it told of
	unfit  bool                 // err says the exit is unsuitable
	err    error                // why the dial failed
	down   *link.Session        // this link closed
}

// Run keeps the best exit linked and a second one on standby until ctx is
// cancelled, moving to the standby the moment the active link dies and
// re-dialing with exponential back-off and jitter. It returns after every
// link is closed and every goroutine it started has ended.
func (p *Pool) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	events := make(chan linkEvent)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		p.maintain(ctx, &wg, events)
		select {
		case ev := <-events:
			p.handle(ctx, &wg, events, ev)
		case sess := <-p.retired:
			p.handle(ctx, &wg, events, linkEvent{down: sess, c: p.candidateOf(sess)})
		case <-p.wake:
		case <-tick.C:
		case <-ctx.Done():
			p.shutdown(&wg, events)
			return nil
		}
	}
}

// maintain starts the dials the pool needs: to the best few exits when
// nothing is up, and to one more for a standby.
func (p *Pool) maintain(ctx context.Context, wg *sync.WaitGroup, events chan<- linkEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var active, standby *candidate
	dialing := 0
	for _, c := range p.cands {
		switch {
		case c.dialing:
			dialing++
		case c.role == RoleActive:
			active = c
		case c.role == RoleStandby:
			standby = c
		}
	}
	if active == nil && standby != nil {
		p.activateLocked(ctx, wg, standby)
		return
	}
	want := 0
	switch {
	case active == nil:
		// Up to probeWidth dials at once: an exit learned while a dial
		// hangs (its path dead, say) is tried now, not after the
		// handshake times out.
		want = probeWidth - dialing
		if len(p.cands) == 0 {
			p.setStatusLocked(StateDown, errors.New("no exit known: give one with --exit, or wait for one to be discovered"))
		}
	case active != nil && standby == nil && dialing == 0:
		want = 1
	}
	now := time.Now()
	for _, c := range p.ranked() {
		if want <= 0 {
			break
		}
		if c.dialing || c.sess != nil || now.Before(c.nextTry) {
			continue
		}
		want--
		c.dialing = true
		if active == nil && p.status.State != StateUp {
			p.status.Exit = c.exit
		}
		wg.Go(func() {
			ev := p.dialChecked(ctx, c)
			select {
			case events <- ev:
			case <-ctx.Done():
				if ev.sess != nil {
					ev.sess.Close()
				}
			}
		})
	}
}

// dialChecked links to c's exit and reads its descriptor: an exit that
// sends none that verifies, or that Require refuses, is not used.
func (p *Pool) dialChecked(ctx context.Context, c *candidate) linkEvent {
	sess, rtt, err := Dial(ctx, p.cfg.Link, c.exit)
	if err != nil {
		return linkEvent{c: c, err: err}
	}
	own, others, dropped, err := fetchDescriptors(ctx, sess, c.exit.ID)
	if dropped > 0 {
		p.log.Info("dropped descriptors that did not verify", "exit", c.exit.ID.Short(), "count", dropped)
	}
	if err != nil {
		sess.Close()
		return linkEvent{c: c, err: fmt.Errorf("%w: no valid descriptor: %v", ErrUnsuitable, err), unfit: true}
	}
	if p.cfg.Require != nil {
		if err := p.cfg.Require(own); err != nil {
			sess.Close()
			return linkEvent{c: c, desc: own, err: fmt.Errorf("%w: %v", ErrUnsuitable, err), unfit: true}
		}
	}
	return linkEvent{c: c, sess: sess, rtt: rtt, desc: own, others: others}
}

// ranked orders candidates best first: the last good exit (the active one)
// first, then by measured round trip, unknown ones after known ones in the
// order they were learned.
func (p *Pool) ranked() []*candidate {
	cs := make([]*candidate, 0, len(p.cands))
	for _, c := range p.cands {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b *candidate) int {
		if d := roleRank(a.role) - roleRank(b.role); d != 0 {
			return d
		}
		if (a.rtt == 0) != (b.rtt == 0) {
			if a.rtt == 0 {
				return 1
			}
			return -1
		}
		if sa, sb := p.score(a), p.score(b); sa != sb {
			if sa < sb {
				return -1
			}
			return 1
		}
		return a.order - b.order
	})
	return cs
}

// score weighs a candidate's round trip by its load, and by four when the
// pool wants a forwarded port that the exit does not lend: lower is
// better.
func (p *Pool) score(c *candidate) float64 {
	s := float64(c.rtt)
	if c.desc != nil {
		s *= 1 + c.desc.Load
		if p.cfg.Forward && !c.desc.Forward {
			s *= 4
		}
	}
	return s
}

// handle applies one event.
func (p *Pool) handle(ctx context.Context, wg *sync.WaitGroup, events chan<- linkEvent, ev linkEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := ev.c
	if c == nil {
		return
	}
	now := time.Now()
	switch {
	case ev.down != nil:
		if c.sess != ev.down {
			return // an old link of this exit
		}
		wasActive := c.role == RoleActive
		if now.Sub(c.upAt) < 10*time.Second {
			c.failures++ // a link that dies at once counts as a failed attempt
		}
		c.sess, c.role = nil, ""
		c.nextTry = now.Add(p.backoff(c.failures))
		ev.down.Close()
		if wasActive {
			p.stats.linkDowns.Add(1)
			p.deactivateLocked(ev.down)
			p.log.Warn("link down", "exit", c.exit.ID.Short())
			for _, o := range p.cands {
				if o.role == RoleStandby {
					p.activateLocked(ctx, wg, o)
					return
				}
			}
			p.setStatusLocked(StateDown, errors.New("link to exit "+c.exit.ID.Short()+" closed"))
		}
	case ev.err != nil:
		p.stats.dialFailures.Add(1)
		c.dialing = false
		c.failures++
		c.lastErr = ev.err.Error()
		wait := p.backoff(c.failures)
		if ev.unfit {
			wait = p.cfg.UnsuitableRetry
			if ev.desc.ID == c.exit.ID {
				c.desc = &ev.desc
			}
		}
		c.nextTry = now.Add(wait)
		p.log.Warn("exit unreachable", "exit", c.exit.ID.Short(), "err", ev.err, "retry_in", wait.Round(time.Millisecond))
		if p.sess == nil {
			p.setStatusLocked(StateDown, ev.err)
		}
	default:
		c.dialing = false
		c.failures, c.lastErr = 0, ""
		c.sess, c.upAt, c.rtt, c.desc = ev.sess, now, max(ev.rtt, time.Nanosecond), &ev.desc
		p.learnLocked(ev.others)
		sess := ev.sess
		wg.Go(func() {
			select {
			case <-sess.CloseChan():
			case <-ctx.Done():
				return
			}
			select {
			case events <- linkEvent{c: c, down: sess}:
			case <-ctx.Done():
			}
		})
		wg.Go(func() { p.acceptInbound(ctx, sess) })
		var active, standby *candidate
		for _, o := range p.cands {
			switch o.role {
			case RoleActive:
				active = o
			case RoleStandby:
				standby = o
			}
		}
		switch {
		case active == nil:
			p.activateLocked(ctx, wg, c)
		case now.Sub(active.upAt) < reselectWindow && p.score(c)*2 < p.score(active) && active.rtt-c.rtt > reselectMargin:
			// The first exit to answer is not always the nearest (a busy
			// machine, a slow handshake): a clearly nearer one that comes
			// up soon after takes over, and the first waits as standby.
			if standby != nil { // one standby is enough
				old := standby.sess
				standby.role, standby.sess = "", nil
				old.Close()
			}
			p.log.Info("switching to a nearer exit", "from", active.exit.ID.Short(), "to", c.exit.ID.Short(),
				"rtt", c.rtt.Round(time.Microsecond))
			p.deactivateLocked(active.sess)
			active.role = RoleStandby
			p.activateLocked(ctx, wg, c)
		case standby == nil:
			c.role = RoleStandby
			p.log.Info("standby link up", "exit", c.exit.ID.Short(), "rtt", c.rtt.Round(time.Microsecond))
		default:
			c.sess = nil // a probe that lost the race
			sess.Close()
		}
	}
}

// learnLocked adds the exits a linked exit told of.
func (p *Pool) learnLocked(known []discovery.Known) {
	if len(known) == 0 {
		return
	}
	for _, k := range known {
		if _, ok := p.cands[k.Desc.ID]; ok {
			continue
		}
		p.order++
		p.cands[k.Desc.ID] = &candidate{exit: link.ExitAddr{ID: k.Desc.ID, Addr: k.Desc.Addrs[0]},
			source: discovery.SourceExchange, added: time.Now(), order: p.order, desc: &k.Desc}
	}
	if p.cfg.OnLearn != nil {
		p.cfg.OnLearn(known)
	}
}

// activateLocked makes c's link the one new flows use, asking its exit for
// the forwarded port first so the first UDP association gets it.
func (p *Pool) activateLocked(ctx context.Context, wg *sync.WaitGroup, c *candidate) {
	c.role = RoleActive
	sess := c.sess
	var port uint16
	if p.cfg.Forward {
		// The request takes one round trip; flows wait on ready meanwhile.
		p.mu.Unlock()
		port = p.requestForward(ctx, sess, c.exit)
		p.mu.Lock()
	}
	if c.sess != sess || sess.IsClosed() {
		return // it died while we asked; the down event follows
	}
	p.sess = sess
	close(p.ready)
	p.stats.activations.Add(1)
	p.status = Status{Exit: c.exit, State: StateUp, Since: time.Now(), ForwardedPort: port}
	p.log.Info("link up", "exit", c.exit.ID.Short(), "addr", c.exit.Addr, "rtt", c.rtt.Round(time.Microsecond), "source", c.source)
	if port != 0 && p.cfg.OnPort != nil {
		p.cfg.OnPort(port)
	}
}

// deactivateLocked stops new flows from using sess.
func (p *Pool) deactivateLocked(sess *link.Session) {
	if p.sess == sess {
		p.sess = nil
		p.ready = make(chan struct{})
	}
	p.status.ForwardedPort = 0
}

func (p *Pool) setStatusLocked(s LinkState, err error) {
	if p.status.State != s {
		p.status.State, p.status.Since = s, time.Now()
	}
	if err != nil {
		p.status.LastError = err.Error()
	}
}

func (p *Pool) candidateOf(sess *link.Session) *candidate {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.cands {
		if c.sess == sess {
			return c
		}
	}
	return nil
}

// backoff is the wait before the next dial after n failures: exponential
// with full jitter, so that many clients of a restarted exit do not return
// in lockstep.
func (p *Pool) backoff(n int) time.Duration {
	if n == 0 {
		return 0
	}
	minB := p.cfg.MinBackoff
	maxB := p.cfg.MaxBackoff
	b := minB << min(n-1, 20)
	if b <= 0 || b > maxB {
		b = maxB
	}
	return b/2 + rand.N(b/2+1)
}

// shutdown closes every link and waits for the pool's goroutines.
func (p *Pool) shutdown(wg *sync.WaitGroup, events <-chan linkEvent) {
	p.mu.Lock()
	p.stopped = true
	for _, c := range p.cands {
		if c.sess != nil {
			c.sess.GoAway()
			c.sess.Close()
			c.sess, c.role = nil, ""
		}
	}
	if p.sess != nil {
		p.sess = nil
		p.ready = make(chan struct{})
	}
	p.status.State, p.status.Since = StateDown, time.Now()
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case ev := <-events: // a dial that finished as we stopped
			if ev.sess != nil {
				ev.sess.Close()
			}
		case <-done:
			return
		}
	}
}

// Dial establishes a link to exit and checks it with one ping: in TLS 1.3
// a client that the exit refuses only learns so on first use. The ping also
// gives the round trip the pool ranks exits by.
func Dial(ctx context.Context, cfg link.Config, exit link.ExitAddr) (*link.Session, time.Duration, error) {
	sess, err := link.Dial(ctx, cfg, exit)
	if err != nil {
		return nil, 0, err
	}
	rtt, err := sess.Ping()
	if err != nil {
		sess.Close()
		return nil, 0, errors.New("exit closed the link after the handshake (is this client on its allow-list?): " + err.Error())
	}
	return sess, rtt, nil
}

// requestForward asks the exit for a port and holds the forward open for
// the link's life. It returns 0 when the exit lends none.
func (p *Pool) requestForward(ctx context.Context, sess *link.Session, exit link.ExitAddr) uint16 {
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return 0
	}
	req := wire.Request{Kind: wire.KindForward, Dst: wire.Addr{Port: p.cfg.ForwardPort}}
	resp, err := wire.Call(ctx, st, req, 10*time.Second)
	switch {
	case err != nil:
		st.Reset()
		p.log.Warn("forward request failed", "exit", exit.ID.Short(), "err", err)
		return 0
	case resp.Status == wire.StatusKindNotSupported:
		st.Close()
		p.log.Warn("this exit offers no port forwarding: the torrent client will not be connectable; choose an exit that forwards ports", "exit", exit.ID.Short())
		return 0
	case resp.Status != wire.StatusOK || resp.Bound.Port == 0:
		st.Close()
		p.log.Warn("exit refused to forward a port", "exit", exit.ID.Short(), "status", resp.Status)
		return 0
	}
	// The stream stays open, held by the session, as long as the link:
	// closing it would end the forward.
	host, _, _ := net.SplitHostPort(exit.Addr)
	p.log.Info("forwarded port", "port", resp.Bound.Port, "public", net.JoinHostPort(host, strconv.Itoa(int(resp.Bound.Port))))
	return resp.Bound.Port
}

// errNotInbound is a well-formed request that is not an inbound
// connection with the peer's address.
var errNotInbound = errors.New("not an inbound connection request")

// readInbound reads the header of a stream the exit opened: an inbound
// connection from the peer at the returned address.
func readInbound(r io.Reader) (netip.AddrPort, error) {
	req, err := wire.ReadRequest(r)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if req.Kind != wire.KindInbound || !req.Dst.IP.IsValid() {
		return netip.AddrPort{}, errNotInbound
	}
	return netip.AddrPortFrom(req.Dst.IP, req.Dst.Port), nil
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
		wg.Go(func() { p.serveInbound(ctx, st) })
	}
}

func (p *Pool) serveInbound(ctx context.Context, st *yamux.Stream) {
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	remote, err := readInbound(st)
	if errors.Is(err, errNotInbound) {
		wire.Respond(st, wire.Response{Status: wire.StatusKindNotSupported})
		st.Close()
		return
	}
	if err != nil {
		st.Reset()
		return
	}
	st.SetReadDeadline(time.Time{})
	if p.cfg.Inbound == nil {
		wire.Respond(st, wire.Response{Status: wire.StatusKindNotSupported})
		st.Close()
		return
	}
	defer p.stats.flows.Begin(wire.KindInbound)()
	conn, err := p.cfg.Inbound(ctx, remote)
	if err != nil {
		wire.Respond(st, wire.Response{Status: wire.StatusOf(err)})
		st.Close()
		p.log.Debug("inbound: local target refused", "dst", remote, "err", err)
		return
	}
	if err := wire.Respond(st, wire.Response{Status: wire.StatusOK, Bound: wire.AddrFromNet(conn.LocalAddr())}); err != nil {
		conn.Close()
		st.Reset()
		return
	}
	p.stats.flows.Splice(conn, st)
}
