package exit

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// serveUnlisted runs an exit whose allow-list admits nobody, publishing
// its descriptor (as on the DHT) or not.
func serveUnlisted(t *testing.T, published bool) (*Server, link.ExitAddr) {
	t.Helper()
	id := newIdentity(t)
	e, err := New(Config{Link: link.Config{Identity: id}, Policy: &policy.Policy{AllowPrivate: true},
		Resolver: loopbackResolver(), DrainTimeout: 100 * time.Millisecond, Allow: func(link.PeerID) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	e.published = func() bool { return published }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, link.ExitAddr{ID: id.ID(), Addr: ln.Addr().String()}
}

// TestDescriptorOnlyLink: a peer off the allow-list of an exit that
// publishes its descriptor, asking only for that descriptor (a relay
// verifying the exit), gets it, and nothing else: a connect on that link
// is refused (status 2) and counted, no target is reached, and the exit
// holds no client for it. On an ordinary link the same peer is refused as
// before.
func TestDescriptorOnlyLink(t *testing.T) {
	tg := startTarget(t, "tcp4", "127.0.0.1:0", nil)
	e, addr := serveUnlisted(t, true)
	stranger := newIdentity(t)

	s, err := discovery.FetchOwn(t.Context(), link.Config{Identity: stranger, DescriptorOnly: true}, addr)
	if err != nil {
		t.Fatalf("descriptor-only fetch from an allow-listed exit: %v", err)
	}
	if _, err := s.Verify(addr.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := discovery.FetchOwn(t.Context(), link.Config{Identity: stranger}, addr); err == nil {
		t.Fatal("a client off the allow-list fetched the descriptor on an ordinary link")
	}

	sess, st := linkStream(t, link.Config{Identity: stranger, DescriptorOnly: true}, addr)
	defer sess.Close()
	resp, err := wire.Call(t.Context(), st, wire.Request{Kind: wire.KindConnect, Dst: mustWireAddr(t, "127.0.0.1:"+tg.port())}, 10*time.Second)
	if err != nil || resp.Status != wire.StatusNotAllowed {
		t.Fatalf("connect on a descriptor-only link: %v %v, want not allowed", resp.Status, err)
	}
	if n := tg.accepted.Load(); n != 0 {
		t.Fatalf("the target saw %d connections", n)
	}
	// The ordinary fetch was refused in the handshake, the connect on
	// the descriptor-only link after it.
	if st := e.Stats(); st.DescOnly != 2 || st.RefusedAllowList != 2 || st.LinksAccepted != 0 || st.Clients != 0 {
		t.Fatalf("stats %+v: want 2 descriptor-only links, 2 allow-list refusals, no client", st)
	}
}

// TestDescriptorOnlyUnpublished: an exit with an allow-list that does not
// publish its descriptor shows its web site to a peer off the list even
// when it asks only for the descriptor, so that a prober cannot confirm
// it is an exit.
func TestDescriptorOnlyUnpublished(t *testing.T) {
	e, addr := serveUnlisted(t, false)
	_, err := link.Dial(t.Context(), link.Config{Identity: newIdentity(t), DescriptorOnly: true}, addr)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("descriptor-only link to an unpublished allow-listed exit: %v, want refused", err)
	}
	waitFor(t, "the refusal counted, the web site shown", func() bool {
		st := e.Stats()
		return st.RefusedAllowList == 1 && st.Fallback == 1
	})
	if st := e.Stats(); st.DescOnly != 0 {
		t.Fatalf("stats %+v: want no descriptor-only link", st)
	}
}

// TestDescriptorOnlyHoldersShed: peers that take every descriptor-only
// slot and hold them, asking nothing, cannot keep a relay from verifying
// the exit: the oldest is closed to make room, as for handshakes, rather
// than the newcomer.
func TestDescriptorOnlyHoldersShed(t *testing.T) {
	e, addr := serveUnlisted(t, true)
	for range maxDescriptorOnly {
		sess, err := link.Dial(t.Context(), link.Config{Identity: newIdentity(t), DescriptorOnly: true}, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sess.Close() })
	}
	waitFor(t, "every descriptor-only slot taken", func() bool { return e.Stats().DescOnly == maxDescriptorOnly })

	s, err := discovery.FetchOwn(t.Context(), link.Config{Identity: newIdentity(t), DescriptorOnly: true}, addr)
	if err != nil {
		t.Fatalf("a relay's descriptor-only fetch while others hold every slot: %v", err)
	}
	if _, err := s.Verify(addr.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.DescOnlyShed == 0 {
		t.Fatalf("stats %+v: want a holder shed", st)
	}
}
