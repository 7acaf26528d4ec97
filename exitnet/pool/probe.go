package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// Probed is an exit found at an address whose peer ID nobody told: the ID
// it proved in the handshake, and its descriptor, verified against that
// ID.
type Probed struct {
	Exit  link.ExitAddr
	Known discovery.Known
	RTT   time.Duration
}

// Probe links to addr without a pinned peer ID (an address from the DHT,
// where anyone can announce anything), learns the ID the exit proves, reads
// its descriptor verified against that ID and judges it by Config.Require;
// then it closes the link. The caller adds a probed exit with AddExit under
// the proven ID, and the pool links to it pinned like any other: no flow
// ever goes over an unpinned link.
func (p *Pool) Probe(ctx context.Context, addr string) (Probed, error) {
	// A candidate is a stranger until it proves otherwise: it sees a key
	// made for this probe alone, never the client's own or one derived for
	// an exit, so probing cannot link the client to anything.
	cfg := p.cfg.Link
	throwaway, err := link.NewIdentity()
	if err != nil {
		return Probed{}, err
	}
	cfg.Identity = throwaway
	sess, err := link.DialUnpinned(ctx, cfg, addr)
	if err != nil {
		return Probed{}, err
	}
	defer sess.Close()
	rtt, err := sess.Ping()
	if err != nil {
		return Probed{}, fmt.Errorf("exit closed the link after the handshake: %w", err)
	}
	k, err := discovery.FetchProven(ctx, sess)
	if err != nil {
		return Probed{}, fmt.Errorf("%w: no valid descriptor: %v", ErrUnsuitable, err)
	}
	if k.Desc.ID != sess.Peer {
		return Probed{}, errors.New("descriptor names another peer than the exit proved") // FetchProven checks it; kept as a guard
	}
	if p.cfg.Require != nil {
		if err := p.cfg.Require(k.Desc); err != nil {
			return Probed{}, fmt.Errorf("%w: %v", ErrUnsuitable, err)
		}
	}
	return Probed{Exit: link.ExitAddr{ID: sess.Peer, Addr: addr}, Known: k, RTT: rtt}, nil
}
