package pool

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

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
	p.stats.flows.Splice(conn, st, nil)
}
