package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// The pool's state changes only in Run's loop, one event at a time, each
// applied by a method of its own under p.mu. Nothing that waits on the
// network happens under p.mu: dials and forward requests run in goroutines
// that post their results back as events, and the callbacks the user gave
// (OnPort, OnLearn) run after p.mu is released.

// event is something that happened to a link, applied by the loop.
type event interface {
	applyLocked(p *Pool, lp *loop)
}

// dialed: a dial succeeded and the exit's descriptor verified.
type dialed struct {
	c      *candidate
	sess   *link.Session
	rtt    time.Duration        // the new link's first ping
	desc   discovery.Descriptor // the exit's own, verified
	others []discovery.Known    // exits it told of
	hop    *hop                 // the relay under sess, on two hops
}

// close closes the new link, and its relay's.
func (d dialed) close() {
	d.sess.Close()
	if d.hop != nil {
		d.hop.sess.Close()
	}
}

// dialFailed: a dial failed, or found the exit unsuitable.
type dialFailed struct {
	c     *candidate
	desc  discovery.Descriptor // the exit's own when it sent one
	unfit bool                 // err says the exit is unsuitable
	relay link.PeerID          // the relay, when it (not the exit) failed
	err   error
}

// linkDown: a link closed, or a flow found it dead.
type linkDown struct {
	sess *link.Session
	// On a two-hop path: watched says the event comes from the path's
	// watch, which found out whether the relay was lost.
	watched, relayLost bool
}

// forwarded: the exit answered the forward request made when c's link
// became active; lease is nil when it lends none.
type forwarded struct {
	c      *candidate
	sess   *link.Session
	lease  *lease // nil without a port
	reason string // why the exit lent no port, when it lent none
}

func (ev dialed) applyLocked(p *Pool, lp *loop)     { p.onDialed(lp, ev) }
func (ev dialFailed) applyLocked(p *Pool, lp *loop) { p.onDialFailed(ev) }
func (ev linkDown) applyLocked(p *Pool, lp *loop)   { p.onLinkDown(lp, ev) }
func (ev forwarded) applyLocked(p *Pool, lp *loop)  { p.onForwarded(lp, ev) }
func (ev portMoved) applyLocked(p *Pool, lp *loop)  { p.onPortMoved(lp, ev) }

// portMoved: the exit of lease said that peers now reach the forward at
// port (its router moved the mapping).
type portMoved struct {
	c     *candidate
	lease *lease
	port  uint16
}

// loop is what Run's handlers need besides the pool: where to start
// goroutines and post their events, and the callbacks to run once p.mu is
// released.
type loop struct {
	ctx    context.Context
	wg     sync.WaitGroup
	events chan event
	after  []func()
}

// close closes sess in a goroutine of the loop: closing a link can wait on
// the network (a write in progress, close_notify), which must not happen
// under p.mu.
func (lp *loop) close(sess *link.Session) {
	lp.wg.Go(func() { sess.Close() })
}

// spawn runs f in a goroutine of the loop and posts the event it returns,
// unless the pool stops first.
func (lp *loop) spawn(f func() event) {
	lp.wg.Go(func() {
		ev := f()
		if ev == nil {
			return
		}
		select {
		case lp.events <- ev:
		case <-lp.ctx.Done():
			if d, ok := ev.(dialed); ok {
				d.close()
			}
		}
	})
}

// Run keeps the best exit linked and a second one on standby until ctx is
// cancelled, moving to the standby the moment the active link dies and
// re-dialing with exponential back-off and jitter. It returns after every
// link is closed and every goroutine it started has ended.
func (p *Pool) Run(ctx context.Context) error {
	lp := &loop{ctx: ctx, events: make(chan event)}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var ev event
	for {
		p.step(lp, ev)
		ev = nil
		select {
		case ev = <-lp.events:
		case sess := <-p.retired:
			ev = linkDown{sess: sess}
		case <-p.wake:
		case <-tick.C:
		case <-ctx.Done():
			p.shutdown(lp)
			return nil
		}
	}
}

// step applies ev, if any, then starts the dials the pool needs, all under
// p.mu; the callbacks that arose run after it is released.
func (p *Pool) step(lp *loop, ev event) {
	p.mu.Lock()
	before := p.status
	if ev != nil {
		ev.applyLocked(p, lp)
	}
	p.maintainLocked(lp)
	if st := p.status; st != before && p.cfg.OnStatus != nil {
		lp.after = append(lp.after, func() { p.cfg.OnStatus(st) })
	}
	after := lp.after
	lp.after = nil
	p.mu.Unlock()
	for _, f := range after {
		f()
	}
}

// roles returns the active and the standby candidate, either nil.
func (p *Pool) rolesLocked() (active, standby *candidate) {
	for _, c := range p.cands {
		switch c.role {
		case RoleActive:
			active = c
		case RoleStandby:
			standby = c
		}
	}
	return active, standby
}

// maintainLocked starts the dials the pool needs: to the best few exits
// when nothing is up, and to one more for a standby.
func (p *Pool) maintainLocked(lp *loop) {
	active, standby := p.rolesLocked()
	dialing := 0
	for _, c := range p.cands {
		if c.dialing {
			dialing++
		}
	}
	if active == nil && standby != nil && !p.resumingLocked() {
		p.activateLocked(lp, standby)
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
	case standby == nil && dialing == 0:
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
		var relay *link.ExitAddr
		if p.cfg.Hops == 2 {
			if p.relayingLocked(c.exit.ID) {
				continue // a relay of the pool's paths is no exit for them
			}
			r, ok := p.pickRelayLocked(c)
			if !ok {
				c.lastErr = "no relay to reach it through: two hops need another exit that relays, in another network"
				if active == nil {
					p.setStatusLocked(StateDown, errors.New(c.lastErr))
				}
				continue
			}
			relay = &r
		}
		want--
		c.dialing, c.via = true, relay
		if active == nil && p.status.State != StateUp {
			p.status.Exit = c.exit
		}
		lp.spawn(func() event { return p.dialChecked(lp.ctx, c, relay) })
	}
}

// onDialed puts a new link to use: as the active one if there is none, in
// place of the active one if it is clearly nearer and the active one is
// new, as the standby if there is none; otherwise it was a probe that lost
// the race and is closed.
func (p *Pool) onDialed(lp *loop, ev dialed) {
	c, sess, now := ev.c, ev.sess, time.Now()
	c.dialing, c.via, c.resume = false, nil, 0
	c.failures, c.lastErr, c.mismatch = 0, "", false
	c.sess, c.upAt, c.rtt, c.desc, c.verified, c.hop = sess, now, max(ev.rtt, time.Nanosecond), &ev.desc, now, ev.hop
	if len(ev.others) > 0 {
		p.learnLocked(ev.others)
		if p.cfg.OnLearn != nil {
			lp.after = append(lp.after, func() { p.cfg.OnLearn(ev.others) })
		}
	}
	if h := ev.hop; h != nil {
		p.relayRTT[h.relay.ID] = max(h.rtt, time.Nanosecond)
		lp.spawn(func() event {
			lost := h.watch(lp.ctx, sess)
			return linkDown{sess: sess, watched: true, relayLost: lost}
		})
	} else {
		lp.spawn(func() event {
			select {
			case <-sess.CloseChan():
				return linkDown{sess: sess}
			case <-lp.ctx.Done():
				return nil
			}
		})
	}
	lp.wg.Go(func() { p.acceptInbound(lp.ctx, sess) })
	active, standby := p.rolesLocked()
	switch {
	case active == nil:
		p.activateLocked(lp, c)
	case now.Sub(active.upAt) < reselectWindow && p.score(c)*2 < p.score(active) && active.rtt-c.rtt > reselectMargin:
		// The first exit to answer is not always the nearest (a busy
		// machine, a slow handshake): a clearly nearer one that comes up
		// soon after takes over, and the first waits as standby.
		if standby != nil { // one standby is enough
			old, oldHop := standby.sess, standby.hop
			standby.role, standby.sess, standby.hop = "", nil, nil
			lp.close(old)
			if oldHop != nil {
				lp.close(oldHop.sess)
			}
		}
		p.log.Info("switching to a nearer exit", "from", active.exit.ID.Short(), "to", c.exit.ID.Short(),
			"rtt", c.rtt.Round(time.Microsecond))
		p.deactivateLocked(active.sess)
		active.role = RoleStandby
		p.activateLocked(lp, c)
	case standby == nil:
		c.role = RoleStandby
		p.log.Info("standby link up", "exit", c.exit.ID.Short(), "rtt", c.rtt.Round(time.Microsecond))
	default:
		c.sess, c.hop = nil, nil // a probe that lost the race
		lp.wg.Go(ev.close)
	}
}

// onDialFailed backs the exit off: exponentially for a failure, for
// UnsuitableRetry for an exit that is not fit for use.
//
// An exit that presents another peer ID than the one pinned will go on
// doing so until someone acts: that is said once, as an error with what to
// do, and the exit is retried only at the longest back-off.
func (p *Pool) onDialFailed(ev dialFailed) {
	c := ev.c
	p.stats.dialFailures.Add(1)
	c.dialing, c.via = false, nil
	c.resume = max(c.resume-1, 0)
	err := ev.err
	if ev.relay != (link.PeerID{}) {
		// The relay failed, not the exit: another relay is tried soon.
		p.relayBad[ev.relay] = time.Now().Add(p.relayBackoff())
		c.lastErr = err.Error()
		c.nextTry = time.Now().Add(p.cfg.MinBackoff)
		p.log.Warn("relay unreachable", "relay", ev.relay.Short(), "exit", c.exit.ID.Short(), "err", err)
		if p.sess == nil {
			p.setStatusLocked(StateDown, err)
		}
		return
	}
	c.failures++
	wait := p.backoff(c.failures)
	level, msg := slog.LevelWarn, "exit unreachable"
	wasMismatch := c.mismatch
	c.mismatch = errors.Is(err, link.ErrPeerMismatch)
	switch {
	case ev.unfit:
		wait = p.cfg.UnsuitableRetry
		if ev.desc.ID == c.exit.ID {
			c.desc = &ev.desc
		}
	case c.mismatch:
		fix := ""
		if c.source == discovery.SourceStatic {
			fix = " and correct --exit"
		}
		err = fmt.Errorf("%w: this address answers with another key; check the peer ID that 'swarmvpn exit' prints on that machine "+
			"(its key may have changed, or another exit took the address)%s", err, fix)
		wait = p.cfg.MaxBackoff
		level, msg = slog.LevelError, "exit is not the one pinned"
		if wasMismatch {
			level = slog.LevelDebug // said once already
		}
	}
	c.lastErr = err.Error()
	c.nextTry = time.Now().Add(wait)
	p.log.Log(context.Background(), level, msg, "exit", c.exit.ID.Short(), "err", err, "retry_in", wait.Round(time.Millisecond))
	if p.sess == nil {
		p.setStatusLocked(StateDown, err)
	}
}

// onLinkDown forgets a closed link; when it was the active one, the standby
// takes over at once.
func (p *Pool) onLinkDown(lp *loop, ev linkDown) {
	var c *candidate
	for _, o := range p.cands {
		if o.sess == ev.sess {
			c = o
		}
	}
	if c == nil {
		return // an old link of an exit, already replaced
	}
	if c.hop != nil && !ev.watched {
		return // the path's watch says which hop failed, at once
	}
	now := time.Now()
	wasActive := c.role == RoleActive
	if ev.relayLost {
		p.relayBad[c.hop.relay.ID] = now.Add(p.relayBackoff())
	} else if now.Sub(c.upAt) < 10*time.Second {
		c.failures++ // a link that dies at once counts as a failed attempt
	}
	lostRelay := c.hop
	c.sess, c.role, c.hop = nil, "", nil
	c.nextTry = now.Add(p.backoff(c.failures))
	lp.close(ev.sess)
	if !wasActive {
		return
	}
	p.stats.linkDowns.Add(1)
	p.deactivateLocked(ev.sess)
	if ev.relayLost {
		// The exit is fine: reach it again through another relay, which
		// keeps the forwarded port, before moving to the standby exit.
		p.log.Warn("relay lost: reaching the same exit through another relay", "relay", lostRelay.relay.ID.Short(),
			"exit", c.exit.ID.Short())
		c.resume, c.nextTry = 2, now
		p.setStatusLocked(StateConnecting, errors.New("relay "+lostRelay.relay.ID.Short()+" lost"))
		return
	}
	p.log.Warn("link down", "exit", c.exit.ID.Short())
	if _, standby := p.rolesLocked(); standby != nil {
		p.activateLocked(lp, standby)
		return
	}
	p.setStatusLocked(StateDown, errors.New("link to exit "+c.exit.ID.Short()+" closed"))
}

// activateLocked makes c's link the active one. With forwarding on, it
// first asks the exit for the forwarded port, so that the first UDP
// association gets it: the request runs in a goroutine, and new flows wait
// on p.ready until its answer makes the link live.
func (p *Pool) activateLocked(lp *loop, c *candidate) {
	c.role = RoleActive
	sess := c.sess
	if !p.cfg.Forward {
		p.goLiveLocked(lp, c, 0)
		return
	}
	want := p.cfg.ForwardPort
	if want == 0 {
		want = c.port // the exit keeps it for this client: ask for it by number
	}
	lp.spawn(func() event {
		l, reason := p.requestForward(lp.ctx, sess, c.exit, want)
		return forwarded{c: c, sess: sess, lease: l, reason: reason}
	})
}

// onForwarded makes the active link live with the port its exit lent,
// unless the link has died or been replaced meanwhile.
func (p *Pool) onForwarded(lp *loop, ev forwarded) {
	if ev.c.sess != ev.sess || ev.c.role != RoleActive {
		return // it died, or a nearer exit took its place, meanwhile
	}
	var port uint16
	if l := ev.lease; l != nil && !ev.sess.IsClosed() {
		port = l.port
		ev.c.port = port // asked for again by number on the next path to this exit
		p.lease = l
		c := ev.c
		l.moved = func(port uint16) {
			select {
			case lp.events <- portMoved{c: c, lease: l, port: port}:
			case <-lp.ctx.Done():
			}
		}
		lp.wg.Go(l.read)
		if p.tcpOff {
			lp.after = append(lp.after, func() { l.setTCP(false) })
		}
	}
	p.goLiveLocked(lp, ev.c, port)
	if p.sess == ev.sess {
		p.status.ForwardError = ev.reason
	}
}

// onPortMoved publishes the port the active forward is reached at now, as
// a new forward's: in the status and through OnPort, so that the torrent
// client and its trackers hear of it.
func (p *Pool) onPortMoved(lp *loop, ev portMoved) {
	if p.lease != ev.lease {
		return // a forward no longer active
	}
	ev.c.port = ev.port // the number to ask for on the next path to this exit
	if p.status.ForwardedPort == ev.port {
		return
	}
	p.status.ForwardedPort = ev.port
	if p.cfg.OnPort != nil {
		lp.after = append(lp.after, func() { p.cfg.OnPort(ev.port) })
	}
}

// goLiveLocked hands c's link to new flows.
func (p *Pool) goLiveLocked(lp *loop, c *candidate, port uint16) {
	if c.sess.IsClosed() {
		return // it died meanwhile; its linkDown event follows
	}
	p.sess, p.hop = c.sess, c.hop
	close(p.ready)
	p.stats.activations.Add(1)
	p.status = Status{Exit: c.exit, State: StateUp, Since: time.Now(), ForwardedPort: port}
	if c.hop != nil {
		p.status.Relay = c.hop.relay
		p.log.Info("link up", "exit", c.exit.ID.Short(), "relay", c.hop.relay.ID.Short(), "addr", c.exit.Addr,
			"rtt", c.rtt.Round(time.Microsecond), "relay_rtt", c.hop.rtt.Round(time.Microsecond), "source", c.source)
	} else {
		p.log.Info("link up", "exit", c.exit.ID.Short(), "addr", c.exit.Addr, "rtt", c.rtt.Round(time.Microsecond), "source", c.source)
	}
	if port != 0 && p.cfg.OnPort != nil {
		lp.after = append(lp.after, func() { p.cfg.OnPort(port) })
	}
}

// deactivateLocked stops new flows from using sess.
func (p *Pool) deactivateLocked(sess *link.Session) {
	if p.sess == sess {
		p.sess, p.hop = nil, nil
		p.ready = make(chan struct{})
	}
	p.status.ForwardedPort, p.status.ForwardError = 0, ""
	p.lease = nil
}

func (p *Pool) setStatusLocked(s LinkState, err error) {
	if p.status.State != s {
		p.status.State, p.status.Since = s, time.Now()
	}
	if err != nil {
		p.status.LastError = err.Error()
	}
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
func (p *Pool) shutdown(lp *loop) {
	p.mu.Lock()
	p.stopped = true
	for _, c := range p.cands {
		if c.sess != nil {
			sess, hop := c.sess, c.hop
			lp.wg.Go(func() {
				sess.GoAway()
				sess.Close()
				if hop != nil {
					hop.sess.Close()
				}
			})
			c.sess, c.role, c.hop = nil, "", nil
		}
	}
	if p.sess != nil {
		p.sess, p.hop = nil, nil
		p.ready = make(chan struct{})
	}
	p.status.State, p.status.Since = StateDown, time.Now()
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { lp.wg.Wait(); close(done) }()
	for {
		select {
		case ev := <-lp.events: // a dial that finished as we stopped
			if d, ok := ev.(dialed); ok {
				d.close()
			}
		case <-done:
			return
		}
	}
}

// resumingLocked reports whether the pool is reaching its last exit again
// through another relay: the standby (another exit) waits meanwhile.
func (p *Pool) resumingLocked() bool {
	for _, c := range p.cands {
		if c.resume > 0 {
			return true
		}
	}
	return false
}

// relayingLocked reports whether id is, or is being dialled as, the relay
// of one of the pool's paths.
func (p *Pool) relayingLocked(id link.PeerID) bool {
	for _, c := range p.cands {
		if c.hop != nil && c.hop.relay.ID == id || c.via != nil && c.via.ID == id {
			return true
		}
	}
	return false
}
