package exit

import (
	"context"
	"crypto/sha256"
	"net"
	"testing"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// TestStatsCountFlowsAndBytes carries a known set of flows and compares
// both ends' counters with it.
func TestStatsCountFlowsAndBytes(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	pl := startPool(t, exit.addr)
	payload, reply := randBytes(300<<10), randBytes(200<<10)
	tg := startTarget(t, "tcp4", "127.0.0.1:0", reply)
	const flows = 3
	for range flows {
		roundTrip(t, pl, "127.0.0.1:"+tg.port(), payload, reply)
	}
	if _, err := pl.DialContext(t.Context(), "tcp", "127.0.0.1:25"); wire.StatusOf(err) != wire.StatusNotAllowed {
		t.Fatalf("dial port 25: %v, want not allowed", err)
	}
	a := associate(t, pl)
	if st := pl.Stats(); st.FlowsOpen != 1 || st.Flows.UDP != 1 {
		t.Fatalf("pl with one association open: %+v", st)
	}
	a.Close()
	a.Close() // counted once

	wantIn, wantOut := uint64(flows*(sha256.Size+len(reply))), uint64(flows*len(payload))
	waitFor(t, "the exit to finish every flow", func() bool {
		s := exit.exit.Stats()
		return s.FlowsOpen == 0 && s.BytesOut == wantOut
	})
	s := exit.exit.Stats()
	if s.Links != 1 || s.Clients != 1 || s.LinksAccepted != 1 {
		t.Errorf("exit links %d, clients %d, accepted %d: want 1 each", s.Links, s.Clients, s.LinksAccepted)
	}
	if s.Flows.Connect != flows+1 || s.Flows.UDP != 1 || s.Flows.Descriptor < 1 || s.Flows.Forward != 0 || s.Flows.Inbound != 0 {
		t.Errorf("exit flows %+v: want %d connect (one refused), 1 udp, a descriptor request", s.Flows, flows+1)
	}
	if s.BytesIn != wantIn || s.BytesOut != wantOut {
		t.Errorf("exit bytes in %d, out %d: want %d, %d", s.BytesIn, s.BytesOut, wantIn, wantOut)
	}
	if s.PolicyRefusals != 1 || s.RefusedAllowList+s.RefusedFull+s.RefusedHandshake+s.RefusedFlows != 0 {
		t.Errorf("exit refusals %+v: want only one by the policy", s)
	}

	waitFor(t, "the pool to count every flow closed", func() bool { return pl.Stats().FlowsOpen == 0 })
	p := pl.Stats()
	if p.Flows.Connect != flows || p.Flows.UDP != 1 || p.Flows.Inbound != 0 {
		t.Errorf("pl flows %+v: want %d connect, 1 udp", p.Flows, flows)
	}
	if p.Links != 1 || p.Activations != 1 || p.LinkDowns != 0 || p.DialFailures != 0 {
		t.Errorf("pl %+v: want one link, activated once, never lost", p)
	}
}

// TestStatsLinkRefusals counts a client off the allow-list and a failed
// handshake, each under its own reason.
func TestStatsLinkRefusals(t *testing.T) {
	id := newIdentity(t)
	e, err := New(Config{Link: link.Config{Identity: id}, Policy: &policy.Policy{AllowPrivate: true},
		Allow: func(link.PeerID) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- e.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	if sess, _, err := pool.Dial(t.Context(), link.Config{Identity: newIdentity(t)}, link.ExitAddr{ID: id.ID(), Addr: ln.Addr().String()}); err == nil {
		sess.Close()
		t.Fatal("a client off the allow-list got a working link")
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("this is not a TLS client hello\r\n\r\n"))
	c.Close()
	waitFor(t, "both refusals counted", func() bool {
		s := e.Stats()
		return s.RefusedAllowList == 1 && s.RefusedHandshake == 1
	})
	if s := e.Stats(); s.RefusedFull != 0 || s.LinksAccepted != 0 || s.Links != 0 {
		t.Fatalf("stats %+v: want no link accepted and none refused as full", s)
	}
}
