package testnet

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

func runPool(t *testing.T, cfg pool.Config) *pool.Pool {
	t.Helper()
	if cfg.Link.Identity == nil {
		id, _ := link.NewIdentity()
		cfg.Link.Identity = id
	}
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
	if cfg.DialWait == 0 {
		cfg.DialWait = 5 * time.Second
	}
	p, err := pool.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

// echoVia sends a line through the pool to an echo target and checks it.
func echoVia(t *testing.T, p *pool.Pool, target string) {
	t.Helper()
	c, err := p.DialContext(t.Context(), "tcp", target)
	if err != nil {
		t.Fatalf("flow: %v (status %+v)", err, p.Status())
	}
	defer c.Close()
	io.WriteString(c, "hello")
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

func activeExit(p *pool.Pool) link.PeerID { return p.Status().Exit.ID }

func roleOf(p *pool.Pool, id link.PeerID) pool.Role {
	for _, e := range p.Exits() {
		if e.Exit.ID == id {
			return e.Role
		}
	}
	return "unknown"
}

// TestFailoverToStandby: with two exits the pool keeps one active and one
// warm; when the active one dies, flows move to the other at once, and
// back again when that one dies in turn and the first has returned.
func TestFailoverToStandby(t *testing.T) {
	app := StartTarget(t, "127.0.0.1:0", Echo)
	a := StartExitNode(t, exit.Config{}, RestartableAddr(t))
	b := StartExitNode(t, exit.Config{}, RestartableAddr(t))
	p := runPool(t, pool.Config{Exits: []link.ExitAddr{a.Addr, b.Addr}})
	echoVia(t, p, app.Addr)
	WaitFor(t, "a standby link", func() bool {
		return roleOf(p, a.Addr.ID) == pool.RoleStandby || roleOf(p, b.Addr.ID) == pool.RoleStandby
	})
	first, second := a, b
	if activeExit(p) == b.Addr.ID {
		first, second = b, a
	}

	first.Stop()
	echoVia(t, p, app.Addr) // new flows use the standby
	if activeExit(p) != second.Addr.ID {
		t.Fatalf("after the active exit died the pool uses %s, want %s", activeExit(p).Short(), second.Addr.ID.Short())
	}

	// The first exit returns on its address; the second dies: back again.
	back := StartExitNode(t, exit.Config{Link: link.Config{Identity: first.Identity}}, first.Addr.Addr)
	// Linked again: as standby, or as active if it measured clearly nearer.
	WaitFor(t, "the returned exit linked", func() bool { r := roleOf(p, back.Addr.ID); return r == pool.RoleStandby || r == pool.RoleActive })
	second.Stop()
	echoVia(t, p, app.Addr)
	if activeExit(p) != back.Addr.ID {
		t.Fatalf("after the second exit died the pool uses %s, want %s", activeExit(p).Short(), back.Addr.ID.Short())
	}
}

// TestSelectionPrefersLowerRTT: of two exits, the one behind a 60 ms link
// is passed over for the near one, whatever the order they were given in.
func TestSelectionPrefersLowerRTT(t *testing.T) {
	app := StartTarget(t, "127.0.0.1:0", Echo)
	far := StartExitNode(t, exit.Config{}, "127.0.0.1:0")
	near := StartExitNode(t, exit.Config{}, "127.0.0.1:0")
	farAddr := link.ExitAddr{ID: far.Addr.ID, Addr: DelayProxy(t, far.Addr.Addr, 30*time.Millisecond)}
	p := runPool(t, pool.Config{})
	p.AddExit(farAddr, discovery.SourceMDNS) // an injected discovery source, far one first
	p.AddExit(near.Addr, discovery.SourceMDNS)
	echoVia(t, p, app.Addr)
	if activeExit(p) != near.Addr.ID {
		t.Fatalf("pool chose %s, want the near exit %s", activeExit(p).Short(), near.Addr.ID.Short())
	}
	WaitFor(t, "the far exit on standby", func() bool { return roleOf(p, far.Addr.ID) == pool.RoleStandby })
	var nearRTT, farRTT time.Duration
	for _, e := range p.Exits() {
		switch e.Exit.ID {
		case near.Addr.ID:
			nearRTT = e.RTT
		case far.Addr.ID:
			farRTT = e.RTT
		}
		if e.Source != discovery.SourceMDNS {
			t.Errorf("exit %s source %q", e.Exit.ID.Short(), e.Source)
		}
	}
	if farRTT < 60*time.Millisecond || nearRTT >= farRTT {
		t.Fatalf("measured RTT near %v, far %v", nearRTT, farRTT)
	}
}

// TestNoExitFailsClosed: a pool that knows no reachable exit refuses flows
// and says why in its status.
func TestNoExitFailsClosed(t *testing.T) {
	p := runPool(t, pool.Config{DialWait: 200 * time.Millisecond})
	if _, err := p.DialContext(t.Context(), "tcp", "127.0.0.1:9"); err == nil {
		t.Fatal("a pool with no exit carried a flow")
	}
	if st := p.Status(); st.State != pool.StateDown || st.LastError == "" {
		t.Fatalf("status %+v: want down with a reason", st)
	}
}

// TestStalledLinkNoticed: the path to the active exit goes dead without
// any connection closing. Keepalive notices within two intervals and new
// flows move to the standby exit.
func TestStalledLinkNoticed(t *testing.T) {
	app := StartTarget(t, "127.0.0.1:0", Echo)
	a := StartExitNode(t, exit.Config{}, "127.0.0.1:0")
	b := StartExitNode(t, exit.Config{}, "127.0.0.1:0")
	path := NewStallProxy(t, a.Addr.Addr)
	id, _ := link.NewIdentity()
	// Only the path to a is watched closely; b is the standby.
	p := runPool(t, pool.Config{Link: link.Config{Identity: id, KeepAlive: 200 * time.Millisecond},
		Exits: []link.ExitAddr{{ID: a.Addr.ID, Addr: path.Addr}}})
	echoVia(t, p, app.Addr)
	p.AddExit(b.Addr, discovery.SourceStatic)
	WaitFor(t, "b on standby", func() bool { return roleOf(p, b.Addr.ID) == pool.RoleStandby })

	path.Stall()
	WaitFor(t, "the stalled link to be dropped", func() bool { return activeExit(p) == b.Addr.ID })
	echoVia(t, p, app.Addr)
}
