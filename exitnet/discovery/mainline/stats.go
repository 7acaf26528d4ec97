package mainline

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Node's state and counters.
type Stats struct {
	Addr      string // the node's UDP address ("" before Run)
	Nodes     int    // nodes in the routing table
	GoodNodes int    // of which responded recently
	Items     int    // BEP 44 items stored for others

	LastAnnounce time.Time // last announce that some node accepted
	LastPublish  time.Time // last publish that some node stored
	LastLookup   time.Time // last lookup that some node answered
	LastGet      time.Time // last get that found a verified item

	Announces        uint64 // announces some node accepted
	AnnounceFailures uint64
	Publishes        uint64 // publishes some node stored
	PublishFailures  uint64
	Lookups          uint64 // lookups some node answered
	LookupFailures   uint64
	Gets             uint64 // gets that found a verified item
	GetFailures      uint64 // gets that found none (or failed)

	ItemsRejected     ItemRejects    // items from the DHT that did not verify
	CandidatesDropped CandidateDrops // candidate addresses Lookup did not return
}

// ItemRejects counts BEP 44 items dropped by Get (and by Publish's read phase), by reason.
type ItemRejects struct {
	Malformed uint64 // no seq, or a value with no key
	WrongKey  uint64 // signed by another key than the one asked for
	Oversize  uint64 // bencoded value over 1000 bytes
	Signature uint64 // signature does not verify over (salt, seq, value)
	Encoding  uint64 // value is not a bencoded byte string
}

// CandidateDrops counts addresses from get_peers replies that Lookup did not return, by reason.
type CandidateDrops struct {
	Invalid   uint64 // unspecified address, port 0, or a zone
	Forbidden uint64 // loopback, private, CGNAT, link-local, multicast… (unless AllowPrivate)
	PerNet    uint64 // over the cap per /24 (IPv4) or /48 (IPv6)
	OverLimit uint64 // over MaxCandidates, or over the bounds on what one lookup reads
}

type statsCounters struct {
	announces, announceFailures atomic.Uint64
	publishes, publishFailures  atomic.Uint64
	lookups, lookupFailures     atomic.Uint64
	gets, getFailures           atomic.Uint64

	rejMalformed, rejWrongKey, rejOversize, rejSignature, rejEncoding atomic.Uint64
	dropInvalid, dropForbidden, dropPerNet, dropOverLimit             atomic.Uint64

	mu                                             sync.Mutex
	lastAnnounce, lastPublish, lastLookup, lastGet time.Time
}

func (c *statsCounters) touch(t *time.Time) {
	c.mu.Lock()
	*t = time.Now()
	c.mu.Unlock()
}

// Stats returns a snapshot of the node's state and counters.
func (n *Node) Stats() Stats {
	c := &n.stats
	s := Stats{
		Announces:        c.announces.Load(),
		AnnounceFailures: c.announceFailures.Load(),
		Publishes:        c.publishes.Load(),
		PublishFailures:  c.publishFailures.Load(),
		Lookups:          c.lookups.Load(),
		LookupFailures:   c.lookupFailures.Load(),
		Gets:             c.gets.Load(),
		GetFailures:      c.getFailures.Load(),
		ItemsRejected: ItemRejects{
			Malformed: c.rejMalformed.Load(),
			WrongKey:  c.rejWrongKey.Load(),
			Oversize:  c.rejOversize.Load(),
			Signature: c.rejSignature.Load(),
			Encoding:  c.rejEncoding.Load(),
		},
		CandidatesDropped: CandidateDrops{
			Invalid:   c.dropInvalid.Load(),
			Forbidden: c.dropForbidden.Load(),
			PerNet:    c.dropPerNet.Load(),
			OverLimit: c.dropOverLimit.Load(),
		},
	}
	c.mu.Lock()
	s.LastAnnounce, s.LastPublish, s.LastLookup, s.LastGet = c.lastAnnounce, c.lastPublish, c.lastLookup, c.lastGet
	c.mu.Unlock()
	if srv := n.srv.Load(); srv != nil {
		ss := srv.Stats()
		s.Addr = srv.Addr().String()
		s.Nodes, s.GoodNodes = ss.Nodes, ss.GoodNodes
	}
	if n.items != nil {
		s.Items = n.items.len()
	}
	return s
}
