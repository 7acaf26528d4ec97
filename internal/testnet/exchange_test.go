package testnet

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// TestPeerExchange: a client that knows only exit A learns of exit B from
// A's signed descriptors, keeps B warm as its standby, and is told of B to
// keep it for next time.
func TestPeerExchange(t *testing.T) {
	app := StartTarget(t, "127.0.0.1:0", Echo)
	b := StartExitNode(t, exit.Config{}, "127.0.0.1:0")
	a := StartExitNode(t, exit.Config{}, "127.0.0.1:0")
	signed, err := b.Exit.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Exit.Learn(signed); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var learned []discovery.Known
	p := runPool(t, pool.Config{Exits: []link.ExitAddr{a.Addr}, OnLearn: func(k []discovery.Known) {
		mu.Lock()
		learned = append(learned, k...)
		mu.Unlock()
	}})
	echoVia(t, p, app.Addr)
	WaitFor(t, "exit B as standby", func() bool { return roleOf(p, b.Addr.ID) == pool.RoleStandby })
	for _, e := range p.Exits() {
		if e.Exit.ID == b.Addr.ID && e.Source != discovery.SourceExchange {
			t.Fatalf("exit B's source is %q, want %q", e.Source, discovery.SourceExchange)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(learned) != 1 || learned[0].Desc.ID != b.Addr.ID {
		t.Fatalf("OnLearn got %d exits, want exit B", len(learned))
	}
}

// TestUnsuitableExitSkipped: an exit whose policy blocks BitTorrent ports
// says so in its descriptor, and a client that needs P2P passes it over
// before sending anything through it.
func TestUnsuitableExitSkipped(t *testing.T) {
	app := StartTarget(t, "127.0.0.1:0", Echo)
	deny, _ := policy.ParseRule("deny 0.0.0.0/0 6881-6889")
	blocked := StartExitNode(t, exit.Config{Policy: &policy.Policy{AllowPrivate: true, Rules: []policy.Rule{deny}}}, "127.0.0.1:0")
	good := StartExitNode(t, exit.Config{}, "127.0.0.1:0")
	needP2P := func(d discovery.Descriptor) error {
		if !d.P2P {
			return errors.New("does not carry BitTorrent (" + d.Policy + ")")
		}
		return nil
	}
	p := runPool(t, pool.Config{Exits: []link.ExitAddr{blocked.Addr, good.Addr}, Require: needP2P})
	echoVia(t, p, app.Addr)
	if activeExit(p) != good.Addr.ID {
		t.Fatalf("pool uses %s, want the exit that carries BitTorrent", activeExit(p).Short())
	}
	WaitFor(t, "the blocked exit to be judged", func() bool {
		for _, e := range p.Exits() {
			if e.Exit.ID == blocked.Addr.ID {
				return strings.Contains(e.LastErr, "does not carry BitTorrent")
			}
		}
		return false
	})
	if st := blocked.Exit.Stats().UDP; st.Associations != 0 {
		t.Fatal("the unsuitable exit carried traffic")
	}
}
