package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

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
// the link's life. It returns nil and why when the exit lends none.
func (p *Pool) requestForward(ctx context.Context, sess *link.Session, exit link.ExitAddr, want uint16) (*lease, string) {
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return nil, "no stream for the forward request: " + err.Error()
	}
	req := wire.Request{Kind: wire.KindForward, Dst: wire.Addr{Port: want}}
	resp, err := wire.Call(ctx, st, req, 10*time.Second)
	switch {
	case err != nil:
		st.Reset()
		p.log.Warn("forward request failed", "exit", exit.ID.Short(), "err", err)
		return nil, "forward request failed: " + err.Error()
	case resp.Status == wire.StatusKindNotSupported:
		st.Close()
		p.log.Warn("this exit offers no port forwarding: the torrent client will not be connectable; choose an exit that forwards ports", "exit", exit.ID.Short())
		return nil, "the exit offers no port forwarding"
	case resp.Status != wire.StatusOK || resp.Bound.Port == 0:
		st.Close()
		reason := "the exit lent no port: " + resp.Status.String()
		p.log.Warn("exit refused to forward a port: the torrent client will not be connectable through it",
			"exit", exit.ID.Short(), "status", int(resp.Status), "reason", resp.Status.String())
		return nil, reason
	}
	// The stream stays open, held by the session, as long as the link:
	// closing it would end the forward. It carries lease messages.
	host, _, _ := net.SplitHostPort(exit.Addr)
	p.log.Info("forwarded port", "port", resp.Bound.Port, "public", net.JoinHostPort(host, strconv.Itoa(int(resp.Bound.Port))),
		"exit", exit.ID.Short())
	return newLease(st, resp.Bound.Port, p.log), ""
}

// dialChecked links to c's exit, through relay when it is not nil, and
// reads its descriptor: an exit that sends none that verifies, or that
// Require refuses, is not used. The exit sees the key derived for it from
// the client's (link.Identity.ForExit).
func (p *Pool) dialChecked(ctx context.Context, c *candidate, relay *link.ExitAddr) event {
	cfg := p.cfg.Link
	cfg.Identity = cfg.Identity.ForExit(c.exit.ID)
	var (
		sess *link.Session
		h    *hop
		rtt  time.Duration
		err  error
	)
	if relay != nil {
		sess, h, rtt, err = DialVia(ctx, cfg, *relay, c.exit)
	} else {
		sess, rtt, err = Dial(ctx, cfg, c.exit)
	}
	if err != nil {
		ev := dialFailed{c: c, err: err}
		if relay != nil && errors.Is(err, errRelay) {
			ev.relay = relay.ID
		}
		return ev
	}
	closeAll := func() {
		sess.Close()
		if h != nil {
			h.sess.Close()
		}
	}
	if sess.Peer != c.exit.ID { // link.Dial pins it; no flow may use a link whose peer was not proven
		sess.Close()
		return dialFailed{c: c, err: fmt.Errorf("%w: exit proved %s, want %s", ErrUnsuitable, sess.Peer.Short(), c.exit.ID.Short()), unfit: true}
	}
	own, others, dropped, err := discovery.Fetch(ctx, sess, sess.Peer)
	if dropped > 0 {
		p.log.Info("dropped descriptors that did not verify", "exit", c.exit.ID.Short(), "count", dropped)
	}
	if err != nil {
		closeAll()
		return dialFailed{c: c, err: fmt.Errorf("%w: no valid descriptor: %v", ErrUnsuitable, err), unfit: true}
	}
	if p.cfg.Require != nil {
		if err := p.cfg.Require(own); err != nil {
			closeAll()
			return dialFailed{c: c, desc: own, err: fmt.Errorf("%w: %v", ErrUnsuitable, err), unfit: true}
		}
	}
	return dialed{c: c, sess: sess, rtt: rtt, desc: own, others: others, hop: h}
}
