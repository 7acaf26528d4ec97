package nat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// entry is a port the caller wants mapped.
type entry struct {
	proto    string
	internal uint16
	external uint16    // last port the router gave; 0 before
	expires  time.Time // lease end; zero for no end
	active   bool
	next     time.Time // next attempt or renewal
	fails    int
	err      error
	via      where // the gateway that gave external
}

// stale is a mapping to delete on the router, retried until it is deleted
// or its lease runs out (then the router drops it itself).
type stale struct {
	proto              string
	internal, external uint16
	until              time.Time // zero: a lease without end, kept until Close
	next               time.Time
	fails              int
	via                where
}

// where is a gateway a mapping was made at, as the record file names it.
type where struct {
	method     string
	gw, client netip.Addr
}

func whereOf(g gateway) where { return where{g.method(), g.address(), g.localAddr()} }

func (w where) rec(proto string, internal, external uint16) recorded {
	return recorded{Method: w.method, Gateway: w.gw, Client: w.client, Proto: proto, Internal: internal, External: external}
}

// state is owned by Run's goroutine.
type state struct {
	gw       gateway
	gwNext   time.Time // when to look for the gateway again
	gwFails  int
	gwErr    error
	reported netip.Addr
	extErr   error
	extNext  time.Time
	entries  []*entry
	stale    []*stale
	notified string
	// leftover: mappings an earlier run recorded and did not delete, to
	// delete once the gateway answers, before anything is mapped.
	leftover []recorded
	written  string // the record file's text as last written
	saved    bool   // written is what the file holds ("" : no file)
}

// Run finds the gateway, maps what Add asks for, renews at half the lease,
// re-creates mappings the router lost, and retries failures with back-off.
// When ctx ends or Close is called it deletes every mapping (within
// CloseTimeout) and returns nil, after which Add and Remove fail with
// ErrClosed. With mode "off" it only waits for the end. Run may be called
// once.
func (m *Mapper) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("nat: Run called twice")
	}
	m.started = true
	m.mu.Unlock()
	defer close(m.done)

	// Close ends ctx too.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		select {
		case <-m.closed:
			cancel()
		case <-ctx.Done():
		}
	})

	if m.cfg.Mode == ModeOff {
		m.log.Info("nat: port mapping is off")
		<-ctx.Done()
		return nil
	}
	st := &state{}
	m.loadRecord(st)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		m.work(ctx, st)
		m.publish(st)
		m.saveRecord(st)
		wake := st.nextWake()
		timer.Reset(time.Until(wake))
		select {
		case <-ctx.Done():
			m.cleanup(st)
			m.publish(st)
			m.saveRecord(st)
			return nil
		case <-m.removed:
			m.applyRemovals(ctx, st)
			m.publish(st)
			m.saveRecord(st)
		case r := <-m.reqs:
			// Removals asked for before this request come first, as they
			// were asked.
			m.applyRemovals(ctx, st)
			rep := m.handle(ctx, st, r)
			m.publish(st) // Status agrees with the reply once the caller has it
			m.saveRecord(st)
			r.reply <- rep
		case <-timer.C:
		}
	}
}

// applyRemovals applies the removals Remove has recorded, in order.
func (m *Mapper) applyRemovals(ctx context.Context, st *state) {
	m.mu.Lock()
	rs := m.removals
	m.removals = nil
	m.mu.Unlock()
	for _, r := range rs {
		m.handle(ctx, st, request{proto: r.proto, internal: r.internal})
	}
	m.saveRecord(st) // a Remove returns once its deletion is recorded
	for _, r := range rs {
		close(r.done)
	}
}

// work does everything that is due.
func (m *Mapper) work(ctx context.Context, st *state) {
	now := time.Now()
	if st.gw == nil && !now.Before(st.gwNext) {
		m.connect(ctx, st)
	}
	if st.gw == nil {
		return
	}
	if !now.Before(st.extNext) {
		m.refreshExternal(ctx, st)
	}
	for _, e := range st.entries {
		if st.gw == nil || ctx.Err() != nil {
			return
		}
		if !time.Now().Before(e.next) {
			m.refresh(ctx, st, e)
		}
	}
	st.stale = slices.DeleteFunc(st.stale, func(s *stale) bool {
		if st.gw == nil || ctx.Err() != nil || time.Now().Before(s.next) {
			return false
		}
		return m.deleteStale(ctx, st, s)
	})
}

// connect looks for the gateway; on success every mapping is made again.
func (m *Mapper) connect(ctx context.Context, st *state) {
	dctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	g, err := m.discover(dctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		st.gwFails++
		st.gwNext = time.Now().Add(m.backoff(st.gwFails))
		st.gwErr = fmt.Errorf("%w: %w", ErrNoGateway, err)
		st.extErr = st.gwErr
		lvl := slog.LevelWarn
		if st.gwFails > 1 {
			lvl = slog.LevelDebug // said once; the status keeps it
		}
		m.log.Log(ctx, lvl, "nat: no gateway found", "err", err, "retry_in", m.backoff(st.gwFails))
		return
	}
	st.gw, st.gwErr = g, nil
	m.log.Info("nat: gateway found", "method", g.method(), "gateway", g.address())
	st.extNext = time.Time{}
	now := time.Now()
	for _, e := range st.entries {
		e.next = now
	}
	for _, s := range st.stale {
		s.next = now
	}
	m.recover(ctx, st)
}

// lost drops a gateway that stopped answering: it is looked for again
// (perhaps restarted, on another port), after a back-off.
func (m *Mapper) lost(st *state, err error) {
	if st.gw == nil {
		return
	}
	st.gwFails++
	st.gwNext = time.Now().Add(m.backoff(st.gwFails))
	st.gwErr = fmt.Errorf("%w: gateway %v stopped answering: %w", ErrNoGateway, st.gw.address(), err)
	m.log.Warn("nat: gateway stopped answering; looking for it again", "gateway", st.gw.address(), "err", err,
		"retry_in", m.backoff(st.gwFails))
	st.gw = nil
}

func (m *Mapper) refreshExternal(ctx context.Context, st *state) {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	a, err := st.gw.externalAddr(cctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		st.extNext = time.Now().Add(m.backoff(2))
		st.extErr = fmt.Errorf("nat: external address: %w", err)
		if !isRefused(err) {
			m.lost(st, err)
			return
		}
		m.log.Warn("nat: gateway gives no external address", "gateway", st.gw.address(), "err", err)
		return
	}
	st.gwFails = 0
	st.extNext = time.Now().Add(m.cfg.lifetime(st.gw.method()) / 2)
	prev, prevErr := st.reported, st.extErr
	st.reported = a
	st.extErr = checkExternal(a)
	if a != prev || (prevErr == nil) != (st.extErr == nil) {
		if st.extErr != nil {
			m.log.Warn("nat: the router's external address is not public", "addr", a, "err", st.extErr)
		} else {
			m.log.Info("nat: public address", "addr", a)
		}
	}
}

// refresh maps e, or renews it.
func (m *Mapper) refresh(ctx context.Context, st *state, e *entry) {
	want := e.external
	if want == 0 {
		want = e.internal
	}
	lifetime := m.cfg.lifetime(st.gw.method())
	// Written down before it is asked for: a crash right after the router
	// maps it leaves it in the record, for the next run to delete.
	via := whereOf(st.gw)
	asked := via.rec(e.proto, e.internal, want)
	m.saveRecord(st, asked)
	cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	ext, granted, err := st.gw.add(cctx, e.proto, e.internal, want, lifetime)
	cancel()
	now := time.Now()
	if err != nil {
		if !isRefused(err) {
			m.keepUnanswered(st, e, asked)
		}
		if ctx.Err() != nil {
			return
		}
		e.fails++
		e.err = err
		e.next = now.Add(m.backoff(e.fails))
		if e.active && !e.expires.IsZero() && !now.Before(e.expires) {
			e.active = false
		}
		m.log.Warn("nat: map port failed", "proto", e.proto, "port", e.internal, "err", err,
			"retry_in", m.backoff(e.fails))
		if !isRefused(err) {
			m.lost(st, err)
		}
		return
	}
	st.gwFails = 0
	if e.external != 0 && ext != e.external {
		m.log.Warn("nat: router gave another external port", "proto", e.proto, "port", e.internal,
			"was", e.external, "now", ext)
		// The old port is not deleted: the router gave another one because
		// ours was lost or taken, and a port someone else now holds is not
		// ours to delete. Were it still ours, its lease ends it.
	} else if !e.active {
		m.log.Info("nat: port mapped", "proto", e.proto, "port", e.internal, "external", ext,
			"method", st.gw.method(), "lease", granted)
	} else {
		m.log.Debug("nat: port renewed", "proto", e.proto, "port", e.internal, "external", ext, "lease", granted)
	}
	e.external, e.active, e.fails, e.err, e.via = ext, true, 0, nil, via
	m.dropOwned(st)
	if granted > 0 {
		granted = min(granted, lifetime) // a longer grant is renewed as if it were what we asked
		e.expires = now.Add(granted)
		e.next = now.Add(max(granted/2, minRenew))
	} else {
		e.expires = time.Time{}
		e.next = now.Add(lifetime / 2)
	}
}

// keepUnanswered keeps asked, a mapping of e the router did not answer
// for, in the record: the router may have made it before the answer was
// lost. It stays there as a leftover, which recover deletes once the
// router answers again (or the next run does) unless the router says it
// holds no such mapping, and which e's next success drops if it names the
// same mapping.
func (m *Mapper) keepUnanswered(st *state, e *entry, asked recorded) {
	if e.external != 0 && e.via.method != "" && e.via.rec(e.proto, e.internal, e.external) == asked {
		return // e keeps it recorded
	}
	if !slices.Contains(st.leftover, asked) {
		st.leftover = append(st.leftover, asked)
	}
}

// deleteStale deletes s on the router and reports whether it is done with.
func (m *Mapper) deleteStale(ctx context.Context, st *state, s *stale) bool {
	now := time.Now()
	if !s.until.IsZero() && !now.Before(s.until) {
		return true // the router has dropped it
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	err := st.gw.remove(cctx, s.proto, s.internal, s.external)
	cancel()
	if err == nil {
		m.log.Info("nat: mapping deleted", "proto", s.proto, "port", s.internal, "external", s.external)
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	s.fails++
	s.next = now.Add(m.backoff(s.fails))
	m.log.Warn("nat: delete mapping failed", "proto", s.proto, "port", s.internal, "external", s.external,
		"err", err, "retry_in", m.backoff(s.fails))
	if !isRefused(err) {
		m.lost(st, err)
	}
	return false
}

// handle answers Add and Remove.
func (m *Mapper) handle(ctx context.Context, st *state, r request) reply {
	i := slices.IndexFunc(st.entries, func(e *entry) bool { return e.proto == r.proto && e.internal == r.internal })
	if !r.add {
		if i < 0 {
			return reply{}
		}
		e := st.entries[i]
		st.entries = slices.Delete(st.entries, i, i+1)
		if e.active || e.external != 0 {
			s := &stale{proto: e.proto, internal: e.internal, external: e.external, until: e.expires, next: time.Now(), via: e.via}
			if st.gw == nil || !m.deleteStale(ctx, st, s) {
				st.stale = append(st.stale, s)
			}
		}
		return reply{}
	}
	if i >= 0 {
		e := st.entries[i]
		if e.active {
			return reply{external: e.external}
		}
		if e.err != nil {
			return reply{err: e.err}
		}
		return reply{err: m.noGateway(st)}
	}
	e := &entry{proto: r.proto, internal: r.internal, next: time.Now()}
	st.entries = append(st.entries, e)
	// A mapping for this port left by an earlier Remove is now wanted again.
	st.stale = slices.DeleteFunc(st.stale, func(s *stale) bool {
		if s.proto == e.proto && s.internal == e.internal {
			e.external, e.via = s.external, s.via
			return true
		}
		return false
	})
	if st.gw == nil {
		return reply{err: m.noGateway(st)}
	}
	m.refresh(ctx, st, e)
	if !e.active {
		return reply{err: e.err}
	}
	return reply{external: e.external}
}

func (m *Mapper) noGateway(st *state) error {
	if st.gwErr != nil {
		return st.gwErr
	}
	return ErrNoGateway
}

// cleanup deletes every mapping, within CloseTimeout.
func (m *Mapper) cleanup(st *state) {
	for _, e := range st.entries {
		if e.active || e.external != 0 {
			st.stale = append(st.stale, &stale{proto: e.proto, internal: e.internal, external: e.external,
				until: e.expires, via: e.via})
		}
	}
	st.entries = nil
	// What is not deleted stays in st.stale, so stays in the record: the
	// next run deletes it.
	st.stale = slices.DeleteFunc(st.stale, func(s *stale) bool { return !s.until.IsZero() && !time.Now().Before(s.until) })
	if len(st.stale) == 0 {
		return
	}
	if st.gw == nil {
		m.log.Warn("nat: gateway gone; mappings left at the router until their lease ends or the next run deletes them",
			"count", len(st.stale))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.CloseTimeout)
	defer cancel()
	st.stale = slices.DeleteFunc(st.stale, func(s *stale) bool {
		if ctx.Err() != nil {
			return false
		}
		if err := st.gw.remove(ctx, s.proto, s.internal, s.external); err != nil {
			m.log.Warn("nat: delete mapping failed", "proto", s.proto, "port", s.internal, "external", s.external, "err", err)
			return false
		}
		m.log.Info("nat: mapping deleted", "proto", s.proto, "port", s.internal, "external", s.external)
		return true
	})
	if len(st.stale) > 0 {
		m.log.Warn("nat: mappings left at the router until their lease ends or the next run deletes them",
			"count", len(st.stale))
	}
}

func (st *state) nextWake() time.Time {
	if st.gw == nil {
		w := st.gwNext
		for _, e := range st.entries {
			if e.active && !e.expires.IsZero() && e.expires.Before(w) {
				w = e.expires
			}
		}
		return w
	}
	w := st.extNext
	for _, e := range st.entries {
		if e.next.Before(w) {
			w = e.next
		}
		if e.active && !e.expires.IsZero() && e.expires.Before(w) {
			w = e.expires
		}
	}
	for _, s := range st.stale {
		if s.next.Before(w) {
			w = s.next
		}
	}
	return w
}

func (m *Mapper) backoff(fails int) time.Duration {
	d := m.cfg.RetryMin
	for i := 1; i < fails && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, m.cfg.RetryMax)
}

// publish updates the snapshot, and signals Changes when what a caller
// publishes changed.
func (m *Mapper) publish(st *state) {
	s := Status{Mode: m.cfg.Mode, Reported: st.reported}
	if st.gw != nil {
		s.Method, s.Gateway = st.gw.method(), st.gw.address()
	}
	extErr := st.extErr
	switch {
	case st.gw == nil:
		extErr = st.gwErr
		if extErr == nil {
			extErr = ErrNoGateway
		}
	case extErr == nil && st.reported.IsValid():
		s.External = st.reported
	case extErr == nil:
		extErr = fmt.Errorf("%w: external address not known yet", ErrNoGateway)
	}
	s.DoubleNAT = errors.Is(extErr, ErrDoubleNAT)
	if st.gwErr != nil {
		s.Err = st.gwErr.Error()
	} else if st.extErr != nil {
		s.Err = st.extErr.Error()
	}
	key := fmt.Sprint(s.Method, s.Gateway, s.External, s.DoubleNAT)
	now := time.Now()
	for _, e := range st.entries {
		if e.active && !e.expires.IsZero() && !now.Before(e.expires) {
			e.active = false // the lease ran out unrenewed
		}
		mp := Mapping{Proto: e.proto, Internal: e.internal, External: e.external, Active: e.active}
		if e.active {
			mp.Expires = e.expires
		}
		if e.err != nil {
			mp.Err = e.err.Error()
		}
		s.Mappings = append(s.Mappings, mp)
		key += fmt.Sprint(" ", mp.Proto, mp.Internal, mp.External, mp.Active)
	}
	m.mu.Lock()
	m.status, m.extErr = s, extErr
	m.mu.Unlock()
	if key != st.notified {
		st.notified = key
		select {
		case m.changes <- struct{}{}:
		default:
		}
	}
}
