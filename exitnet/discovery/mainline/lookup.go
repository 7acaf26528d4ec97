package mainline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2"
)

// Bounds on what one Lookup reads from the DHT.
const (
	maxValuesPerReply = 200  // values taken from one get_peers reply
	maxSeenCandidates = 4096 // distinct addresses one lookup remembers
)

// ErrNoNode is returned when no DHT node answered (or accepted) an operation.
var ErrNoNode = errors.New("no dht node answered")

// Announce announces port (the exit's link port) on today's rendezvous hash (BEP 5), to the nodes
// closest to it. Nodes forget announced peers after about 30 minutes: re-announce every 15 (the
// Publisher does). It returns ErrNoNode (wrapped) when no node accepted the announce.
func (n *Node) Announce(ctx context.Context, port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("dht announce: port %d out of range", port)
	}
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	srv, err := n.server(ctx)
	if err != nil {
		return fmt.Errorf("dht announce: %w", err)
	}
	hash := RendezvousHash(time.Now())
	before := srv.Stats().SuccessfulOutboundAnnouncePeerQueries
	a, err := srv.AnnounceTraversal(hash, dht.AnnouncePeer(dht.AnnouncePeerOpts{Port: port}))
	if err != nil {
		n.stats.announceFailures.Add(1)
		return fmt.Errorf("dht announce: %w", err)
	}
	drain(ctx, a, nil)
	accepted := srv.Stats().SuccessfulOutboundAnnouncePeerQueries - before
	if accepted <= 0 {
		n.stats.announceFailures.Add(1)
		if ctx.Err() != nil {
			return fmt.Errorf("dht announce: %w", ctx.Err())
		}
		return fmt.Errorf("dht announce: %w", ErrNoNode)
	}
	n.stats.announces.Add(1)
	n.stats.touch(&n.stats.lastAnnounce)
	n.log.Debug("dht announced", "port", port, "nodes", accepted)
	return nil
}

// drain reads an announce's peer replies until it ends (or ctx does, which stops it), passing each
// to f if f is not nil. It returns once the library's goroutines for it are done.
func drain(ctx context.Context, a *dht.Announce, f func(dht.PeersValues)) {
	stopped := false
	for {
		select {
		case pv, ok := <-a.Peers:
			if !ok {
				return
			}
			if f != nil && !stopped {
				f(pv)
			}
		case <-ctx.Done():
			if !stopped {
				stopped = true
				a.Close()
			}
			// Keep reading so the traversal's senders can finish; Peers closes soon after.
			for range a.Peers {
			}
			return
		}
	}
}

// Lookup lists candidate exit addresses: get_peers on the rendezvous hashes of day and of the day
// before (clients pass time.Now()). The addresses are unauthenticated: anyone can announce
// anything, so the caller must verify an exit before using it. Lookup returns them deduplicated,
// ordered by how many DHT nodes reported each, with forbidden ranges dropped (unless
// Config.AllowPrivate), at most Config.CandidatesPerNet per IPv4 /24 or IPv6 /48, and at most
// Config.MaxCandidates in all. It returns ErrNoNode (wrapped) when no DHT node answered; an empty
// list with a nil error means the DHT answered and no exit is announced.
func (n *Node) Lookup(ctx context.Context, day time.Time) ([]netip.AddrPort, error) {
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	srv, err := n.server(ctx)
	if err != nil {
		return nil, fmt.Errorf("dht lookup: %w", err)
	}

	c := newCollector()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, h := range [][20]byte{RendezvousHash(day), RendezvousHash(day.AddDate(0, 0, -1))} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := srv.AnnounceTraversal(h)
			if err != nil {
				errs[i] = err
				return
			}
			drain(ctx, a, c.add)
		}()
	}
	wg.Wait()
	if c.responses() == 0 {
		n.stats.lookupFailures.Add(1)
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("dht lookup: %w: %w", ErrNoNode, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dht lookup: %w", ctx.Err())
		}
		return nil, fmt.Errorf("dht lookup: %w", ErrNoNode)
	}
	out, drops := c.result(n.cfg.AllowPrivate, n.cfg.CandidatesPerNet, n.cfg.MaxCandidates)
	n.stats.dropInvalid.Add(drops.Invalid)
	n.stats.dropForbidden.Add(drops.Forbidden)
	n.stats.dropPerNet.Add(drops.PerNet)
	n.stats.dropOverLimit.Add(drops.OverLimit)
	n.stats.lookups.Add(1)
	n.stats.touch(&n.stats.lastLookup)
	n.log.Debug("dht lookup", "candidates", len(out), "replies", c.responses())
	return out, nil
}

// collector gathers the values of get_peers replies, bounded.
type collector struct {
	mu       sync.Mutex
	replies  int
	support  map[netip.AddrPort]int // address → number of replies that listed it
	order    []netip.AddrPort
	overflow uint64 // values not read because of the bounds
	invalid  uint64
}

func newCollector() *collector { return &collector{support: make(map[netip.AddrPort]int)} }

func (c *collector) add(pv dht.PeersValues) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replies++
	values := pv.Peers
	if len(values) > maxValuesPerReply {
		c.overflow += uint64(len(values) - maxValuesPerReply)
		values = values[:maxValuesPerReply]
	}
	seenHere := make(map[netip.AddrPort]bool, len(values))
	for _, v := range values {
		ap, ok := nodeAddrPort(v)
		if !ok {
			c.invalid++
			continue
		}
		if seenHere[ap] {
			continue
		}
		seenHere[ap] = true
		if _, ok := c.support[ap]; !ok {
			if len(c.support) >= maxSeenCandidates {
				c.overflow++
				continue
			}
			c.order = append(c.order, ap)
		}
		c.support[ap]++
	}
}

func (c *collector) responses() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replies
}

// result filters, orders and caps the candidates.
func (c *collector) result(allowPrivate bool, perNet, limit int) ([]netip.AddrPort, CandidateDrops) {
	c.mu.Lock()
	defer c.mu.Unlock()
	drops := CandidateDrops{Invalid: c.invalid, OverLimit: c.overflow}
	var ok []netip.AddrPort
	for _, ap := range c.order {
		switch checkAddr(ap, allowPrivate) {
		case dropInvalid:
			drops.Invalid++
		case dropForbidden:
			drops.Forbidden++
		default:
			ok = append(ok, ap)
		}
	}
	// Most reported first; ties in random order, so that repeated lookups see different
	// candidates when there are more than the caps admit.
	rand.Shuffle(len(ok), func(i, j int) { ok[i], ok[j] = ok[j], ok[i] })
	slices.SortStableFunc(ok, func(a, b netip.AddrPort) int { return c.support[b] - c.support[a] })
	perPrefix := make(map[netip.Prefix]int)
	var out []netip.AddrPort
	for _, ap := range ok {
		k := netKey(ap.Addr())
		if perPrefix[k] >= perNet {
			drops.PerNet++
			continue
		}
		if len(out) >= limit {
			drops.OverLimit++
			continue
		}
		perPrefix[k]++
		out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return out, drops
}
