package exit

import (
	"context"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// maxDescriptorOnly caps the descriptor-only links an exit holds at once,
// maxDescriptorOnlyPerSource those from one address (IPv6: /64); past
// them the oldest is closed to make room. A relay's fetch takes a round
// trip or two, so the oldest are those that hold a slot on purpose:
// refusing the newcomer instead would let anyone who holds them all keep
// every relay from verifying the exit.
const (
	maxDescriptorOnly          = 32
	maxDescriptorOnlyPerSource = 4
)

// admitDescriptorOnly decides in the handshake about a client that asks
// only for the exit's descriptor: one the allow-list admits, and any
// client while the exit publishes its descriptor on the DHT, where anyone
// reads it anyway. An exit that does not publish keeps showing its web
// site to peers off its allow-list, so that a prober cannot confirm it is
// an exit; a relay that is to verify it must then be on the list.
func (e *Server) admitDescriptorOnly(id link.PeerID) bool {
	if e.allowed(id) || e.published() {
		return true
	}
	e.stats.refusedAllowList.Add(1)
	return false
}

// publishing reports whether the exit publishes its descriptor on the DHT
// now.
func (e *Server) publishing() bool {
	if e.dht == nil {
		return false
	}
	e.dht.mu.Lock()
	defer e.dht.mu.Unlock()
	return e.dht.pub != nil
}

// serveDescriptorOnly serves a link whose client asked only for the exit's
// descriptor (link.Config.DescriptorOnly): a relay verifying this exit
// before it carries a client's link here (admitDescriptorOnly says who
// may). The link serves that one request and nothing else, holds no
// client slot but one of maxDescriptorOnly, and lasts RequestTimeout at
// most. Its one other request is refused (status
// 2) and counted as a refusal by the allow-list.
func (e *Server) serveDescriptorOnly(ctx context.Context, sess *link.Session) {
	defer sess.Close()
	held := e.descOnly.begin(sess.Conn)
	defer e.descOnly.end(held)
	e.stats.descOnly.Add(1)
	timeout := orDefault(e.cfg.RequestTimeout, 10*time.Second)
	deadline := time.AfterFunc(timeout, func() { sess.Close() })
	defer deadline.Stop()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()

	st, err := sess.AcceptStream()
	if err != nil {
		return
	}
	// The client closes the link once it has read the answer; closing it
	// here first could cut what is still on its way. The deadline bounds
	// the wait.
	defer func() { <-sess.CloseChan() }()
	st.SetReadDeadline(time.Now().Add(timeout))
	req, err := wire.ReadRequest(st)
	if err != nil {
		st.Reset()
		return
	}
	st.SetReadDeadline(time.Time{})
	if req.Kind != wire.KindDescriptor {
		e.stats.refusedAllowList.Add(1)
		e.log.Debug("descriptor-only link asked for more", "peer", sess.Peer.Short(), "kind", int(req.Kind))
		wire.Respond(st, wire.Response{Status: wire.StatusNotAllowed})
		st.Close()
		return
	}
	e.writeDescriptors(st, false)
}
