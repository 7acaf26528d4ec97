package pool

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCallbacksRunOutsideTheLock blocks OnPort, the callback that tells the
// torrent client its port: while it blocks, the pool must still answer
// Status, accept exits and carry flows, since every new flow takes the lock
// the callback once ran under.
func TestCallbacksRunOutsideTheLock(t *testing.T) {
	exitID, _ := link.NewIdentity()
	clientID, _ := link.NewIdentity()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leases, err := portfwd.NewLeases(portfwd.LeasesConfig{Lo: 45100, Hi: 45199})
	if err != nil {
		t.Fatal(err)
	}
	e, err := exit.New(exit.Config{Link: link.Config{Identity: exitID}, Policy: &policy.Policy{AllowPrivate: true},
		Ports: leases, Addrs: []string{ln.Addr().String()}, DrainTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exitDone := make(chan struct{})
	go func() { e.Serve(ctx, ln); close(exitDone) }()

	entered, release := make(chan uint16, 1), make(chan struct{})
	p, err := New(Config{Link: link.Config{Identity: clientID},
		Exits:   []link.ExitAddr{{ID: exitID.ID(), Addr: ln.Addr().String()}},
		Forward: true, DialWait: 10 * time.Second,
		OnPort: func(port uint16) { entered <- port; <-release }})
	if err != nil {
		t.Fatal(err)
	}
	poolDone := make(chan struct{})
	go func() { p.Run(ctx); close(poolDone) }()
	t.Cleanup(func() { cancel(); <-poolDone; <-exitDone })

	var port uint16
	select {
	case port = <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the pool never obtained a forwarded port")
	}
	answered := make(chan Status, 1)
	go func() {
		p.AddExit(link.ExitAddr{ID: clientID.ID(), Addr: "127.0.0.1:1"}, "static")
		answered <- p.Status()
	}()
	var st Status
	select {
	case st = <-answered:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("Status and AddExit waited for the OnPort callback")
	}
	if st.State != StateUp || st.ForwardedPort != port {
		t.Errorf("status while OnPort blocks: %+v, want up with port %d", st, port)
	}
	// A flow still opens, to a listener on loopback, which the lab policy
	// lets through.
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	c, err := p.DialContext(t.Context(), "tcp", target.Addr().String())
	if err != nil {
		t.Errorf("a flow while OnPort blocks: %v", err)
	} else {
		c.Close()
	}
	close(release)
}

// TestCancelledDialsKeepTheLink dials with contexts that are already
// cancelled while a long flow runs: each such dial fails alone, and the
// link, with the long flow on it, stays up.
func TestCancelledDialsKeepTheLink(t *testing.T) {
	exitID, _ := link.NewIdentity()
	clientID, _ := link.NewIdentity()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := exit.New(exit.Config{Link: link.Config{Identity: exitID}, Policy: &policy.Policy{AllowPrivate: true},
		Addrs: []string{ln.Addr().String()}, DrainTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	exitDone, poolDone := make(chan struct{}), make(chan struct{})
	go func() { e.Serve(ctx, ln); close(exitDone) }()
	p, err := New(Config{Link: link.Config{Identity: clientID},
		Exits: []link.ExitAddr{{ID: exitID.ID(), Addr: ln.Addr().String()}}, DialWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go func() { p.Run(ctx); close(poolDone) }()
	t.Cleanup(func() { cancel(); <-poolDone; <-exitDone })

	long, err := p.DialContext(t.Context(), "tcp", echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	gone, stop := context.WithCancel(t.Context())
	stop()
	for range 20 {
		if c, err := p.DialContext(gone, "tcp", echo.Addr().String()); err == nil {
			c.Close()
		}
	}
	buf := make([]byte, 5)
	long.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := long.Write([]byte("still")); err != nil {
		t.Fatalf("the long flow after cancelled dials: %v", err)
	}
	if _, err := io.ReadFull(long, buf); err != nil || string(buf) != "still" {
		t.Fatalf("the long flow after cancelled dials: %q, %v", buf, err)
	}
	if st := p.Stats(); st.LinkDowns != 0 || st.Activations != 1 {
		t.Errorf("pool %+v: the link went down", st)
	}
}
