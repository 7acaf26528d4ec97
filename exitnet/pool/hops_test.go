package pool

import (
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

func TestSameNetwork(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"198.51.100.7:443", "198.51.7.9:443", true},
		{"198.51.100.7:443", "198.52.100.7:443", false},
		{"[2001:db8:1::1]:443", "[2001:db8:ffff::2]:443", true},
		{"[2001:db8::1]:443", "[2001:db9::1]:443", false},
		{"[::ffff:198.51.100.7]:443", "198.51.0.1:443", true},
		{"198.51.100.7:443", "[2001:db8::1]:443", false},
		{"exit.example:443", "exit.example:8443", true},
		{"exit.example:443", "other.example:443", false},
		{"exit.example:443", "198.51.100.7:443", false},
	} {
		if got := sameNetwork(tc.a, tc.b); got != tc.same {
			t.Errorf("sameNetwork(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

func newID(t *testing.T) *link.Identity {
	t.Helper()
	id, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestPickRelay: the relay for a path is never its exit, never in the
// exit's network, never an exit that says it does not relay or failed
// lately, never an exit of another path; the nearest known one first.
func TestPickRelay(t *testing.T) {
	exit := link.ExitAddr{ID: newID(t).ID(), Addr: "198.51.100.7:443"}
	near := link.ExitAddr{ID: newID(t).ID(), Addr: "203.0.113.1:443"}
	far := link.ExitAddr{ID: newID(t).ID(), Addr: "192.0.2.1:443"}
	sameNet := link.ExitAddr{ID: newID(t).ID(), Addr: "198.51.3.3:443"}
	noRelay := link.ExitAddr{ID: newID(t).ID(), Addr: "100.1.1.1:443"}
	p, err := New(Config{Link: link.Config{Identity: newID(t)}, Hops: 2,
		Exits: []link.ExitAddr{exit, far, near, sameNet, noRelay}})
	if err != nil {
		t.Fatal(err)
	}
	p.cands[noRelay.ID].desc = &discovery.Descriptor{ID: noRelay.ID, Relay: false}
	c := p.cands[exit.ID]
	pick := func() link.PeerID {
		r, ok := p.pickRelayLocked(c)
		if !ok {
			return link.PeerID{}
		}
		return r.ID
	}
	if got := pick(); got != far.ID { // none measured: the first learned
		t.Fatalf("picked %s, want the first learned relay %s", got.Short(), far.ID.Short())
	}
	p.relayRTT[near.ID], p.relayRTT[far.ID] = 5*time.Millisecond, 50*time.Millisecond
	if got := pick(); got != near.ID {
		t.Fatalf("picked %s, want the nearest %s", got.Short(), near.ID.Short())
	}
	p.relayBad[near.ID] = time.Now().Add(time.Minute)
	if got := pick(); got != far.ID {
		t.Fatalf("picked %s after the nearest failed, want %s", got.Short(), far.ID.Short())
	}
	p.cands[far.ID].dialing = true // an exit of another path
	if got := pick(); got != (link.PeerID{}) {
		t.Fatalf("picked %s; every other exit is in the exit's network, does not relay, failed or is busy", got.Short())
	}
	// A pinned relay is the user's choice, even in the exit's network.
	p.cfg.Relays = []link.ExitAddr{sameNet}
	if got := pick(); got != sameNet.ID {
		t.Fatalf("picked %s, want the pinned relay", got.Short())
	}
	p.cfg.Relays = []link.ExitAddr{exit}
	if got := pick(); got != (link.PeerID{}) {
		t.Fatal("an exit was picked as its own relay")
	}
}
