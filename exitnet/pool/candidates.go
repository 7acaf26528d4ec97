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

	desc     *discovery.Descriptor // from the last link, verified
	verified time.Time             // when desc was last verified
	dialing  bool
	sess     *link.Session
	role     Role // RoleActive, RoleStandby or "" (linked but spare, or not linked)
	upAt     time.Time

	hop    *hop           // the relay under sess, on a two-hop path
	via    *link.ExitAddr // the relay being dialled through
	resume int            // dials left to reach this exit again through another relay, its old one lost
	port   uint16         // the port it last lent, asked for again
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
	// Verified is when the exit's descriptor last verified on a link;
	// zero before the pool has linked to it.
	Verified time.Time
	// Relaying says the pool's active path goes through this exit as
	// its relay.
	Relaying bool
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
			info.Caps, info.Load, info.Verified = c.desc.Caps(), c.desc.Load, c.verified
		}
		info.Relaying = p.hop != nil && p.hop.relay.ID == c.exit.ID
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
		if (a.resume > 0) != (b.resume > 0) { // an exit to reach again through another relay
			if a.resume > 0 {
				return -1
			}
			return 1
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

// maxLearned bounds the exits the pool keeps from what other exits told
// it: peer IDs cost nothing, and a hostile exit can tell of new ones at
// every link.
const maxLearned = discovery.MaxKnown

// learnLocked adds the exits a linked exit told of. Past maxLearned, one
// learned exit that is not linked makes room for each new one, the most
// failed first.
func (p *Pool) learnLocked(known []discovery.Known) {
	learned := 0
	for _, c := range p.cands {
		if c.source == discovery.SourceExchange {
			learned++
		}
	}
	for _, k := range known {
		if _, ok := p.cands[k.Desc.ID]; ok {
			continue
		}
		if learned < maxLearned {
			learned++
		} else if !p.evictLearnedLocked() {
			return
		}
		p.order++
		p.cands[k.Desc.ID] = &candidate{exit: link.ExitAddr{ID: k.Desc.ID, Addr: k.Desc.Addrs[0]},
			source: discovery.SourceExchange, added: time.Now(), order: p.order, desc: &k.Desc}
	}
}

// evictLearnedLocked forgets the learned exit that is not linked or being
// dialed and has failed most (the oldest among equals), and reports
// whether there was one.
func (p *Pool) evictLearnedLocked() bool {
	var worst *candidate
	for _, c := range p.cands {
		if c.source != discovery.SourceExchange || c.sess != nil || c.dialing {
			continue
		}
		if worst == nil || c.failures > worst.failures || c.failures == worst.failures && c.order < worst.order {
			worst = c
		}
	}
	if worst == nil {
		return false
	}
	delete(p.cands, worst.exit.ID)
	return true
}
