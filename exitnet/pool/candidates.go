package pool

import (
	"slices"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// Role is what a candidate's link is for.
type Role string

const (
	RoleActive  Role = "active"  // carries new flows
	RoleStandby Role = "standby" // linked, ready to take over at once
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
	mismatch bool // the last dial found another peer ID than the pinned one

	desc    *discovery.Descriptor // from the last link, verified
	dialing bool
	sess    *link.Session
	role    Role // RoleActive, RoleStandby or "" (linked but spare, or not linked)
	upAt    time.Time
}

// ExitInfo describes a known exit, for `swarmvpn peers`.
type ExitInfo struct {
	Exit    link.ExitAddr
	Source  discovery.Source
	Role    Role // active, standby, or empty
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

func roleRank(r Role) int {
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

// learnLocked adds the exits a linked exit told of.
func (p *Pool) learnLocked(known []discovery.Known) {
	for _, k := range known {
		if _, ok := p.cands[k.Desc.ID]; ok {
			continue
		}
		p.order++
		p.cands[k.Desc.ID] = &candidate{exit: link.ExitAddr{ID: k.Desc.ID, Addr: k.Desc.Addrs[0]},
			source: discovery.SourceExchange, added: time.Now(), order: p.order, desc: &k.Desc}
	}
}
