package testnet

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

// Options shape a Topology. The zero value is a working lab: the exit may
// reach loopback (where tests put their targets).
type Options struct {
	// Policy is the exit's policy; nil means the default policy with
	// AllowPrivate, so loopback targets are reachable.
	Policy *policy.Policy
	// ForwardPorts, when set, makes the exit lend ports of this range and
	// the client ask for one, forwarding inbound connections to
	// ForwardTarget.
	ForwardPorts  *portfwd.LeasesConfig
	ForwardTarget string
	// CheckEvery, when set, is how often the client checks its forward
	// target for a TCP listener and has the exit probe its port.
	CheckEvery time.Duration
	// NAT, when set, is the exit's router (a stand-in: nothing here
	// speaks to a real one).
	NAT exit.PortMapper
	// PortFile, when set, is where the client writes its forwarded port.
	PortFile string
}

// Topology is an exit and a client linked to it, built by client.New as
// 'swarmvpn connect' builds one, all in this process on 127.0.0.1.
type Topology struct {
	Client      *client.Client
	SOCKS, HTTP string     // the client's proxy addresses
	Pool        *pool.Pool // the client's pool
	ExitAddr    link.ExitAddr
	Exit        *exit.Server // the running exit; replaced by StartExit
	// Ports receives the forwarded port each time the client obtains one.
	Ports chan uint16

	t      testing.TB
	opts   Options
	exitID *link.Identity
	leases *portfwd.Leases // kept across exit restarts, like the lease file
	mu     sync.Mutex
	node   *ExitNode
}

// Start builds a topology; t.Cleanup tears it down.
func Start(t testing.TB, opts Options) *Topology {
	t.Helper()
	if opts.Policy == nil {
		opts.Policy = &policy.Policy{AllowPrivate: true}
	}
	exitID, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	tp := &Topology{t: t, opts: opts, exitID: exitID, Ports: make(chan uint16, 16)}
	if opts.ForwardPorts != nil {
		leases, err := portfwd.NewLeases(*opts.ForwardPorts)
		if err != nil {
			t.Fatal(err)
		}
		tp.leases = leases
	}
	tp.StartExit(RestartableAddr(t))

	clientID, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cfg := client.Config{Identity: clientID, Exits: []link.ExitAddr{tp.ExitAddr}, StateDir: t.TempDir(),
		SOCKS: "127.0.0.1:0", HTTP: "127.0.0.1:0", Forward: "off", PortFile: opts.PortFile,
		Tuning: client.Tuning{DialWait: time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
			ProbeEvery: opts.CheckEvery, TargetEvery: opts.CheckEvery},
		OnPort: func(port uint16) {
			select {
			case tp.Ports <- port:
			default:
			}
		}}
	if opts.ForwardPorts != nil {
		cfg.Forward = opts.ForwardTarget
	}
	tp.Client, err = client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tp.Pool, tp.SOCKS, tp.HTTP = tp.Client.Pool(), tp.Client.SOCKSAddr(), tp.Client.HTTPAddr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(t, "client", func() error { return tp.Client.Run(ctx) })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return tp
}

func serve(t testing.TB, what string, f func() error) {
	if err := f(); err != nil {
		t.Errorf("%s Serve: %v", what, err)
	}
}

// RestartableAddr returns a free loopback address for a server that a test
// stops and starts again on the same address. Its port lies below the
// kernel's range of ephemeral ports, so no connection made meanwhile (by
// this test or another running beside it) can take it while the server is
// down, as one can take a port that "127.0.0.1:0" handed out.
func RestartableAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12000)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatal("no free loopback port between 20000 and 32000")
	return ""
}

// StartExit starts the exit on addr, keeping its identity. It is called by
// Start; call it again after StopExit to bring the exit back.
func (tp *Topology) StartExit(addr string) {
	tp.t.Helper()
	ec := exit.Config{Link: link.Config{Identity: tp.exitID}, Policy: tp.opts.Policy}
	if tp.leases != nil {
		ec.Ports = tp.leases
	}
	ec.NAT = tp.opts.NAT
	n := StartExitNode(tp.t, ec, addr)
	tp.ExitAddr, tp.Exit = n.Addr, n.Exit
	tp.mu.Lock()
	tp.node = n
	tp.mu.Unlock()
}

// StopExit shuts the exit down and waits until it has. It may be called
// more than once.
func (tp *Topology) StopExit() {
	tp.mu.Lock()
	n := tp.node
	tp.mu.Unlock()
	if n != nil {
		n.Stop()
	}
}

// ExitNode is an exit serving in this process.
type ExitNode struct {
	Addr     link.ExitAddr
	Exit     *exit.Server
	Identity *link.Identity

	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

// StartExitNode runs an exit with cfg on addr ("127.0.0.1:0" for a fresh
// port). A nil identity gets a new one; a nil policy is the lab policy
// (loopback allowed); names resolve from /etc/hosts only. t.Cleanup stops
// it.
func StartExitNode(t testing.TB, cfg exit.Config, addr string) *ExitNode {
	t.Helper()
	if cfg.Link.Identity == nil {
		id, err := link.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Link.Identity = id
	}
	if cfg.Policy == nil {
		cfg.Policy = &policy.Policy{AllowPrivate: true}
	}
	if cfg.Resolver == nil {
		cfg.Resolver = LoopbackResolver()
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 100 * time.Millisecond
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addrs == nil {
		cfg.Addrs = []string{ln.Addr().String()}
	}
	e, err := exit.New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &ExitNode{Addr: link.ExitAddr{ID: cfg.Link.Identity.ID(), Addr: ln.Addr().String()}, Exit: e, Identity: cfg.Link.Identity,
		cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		serve(t, "exit", func() error { return e.Serve(ctx, ln) })
	}()
	t.Cleanup(n.Stop)
	return n
}

// Stop shuts the exit down and waits until it has. It may be called more
// than once.
func (n *ExitNode) Stop() {
	n.once.Do(func() {
		n.cancel()
		<-n.done
	})
}

// LoopbackResolver resolves from /etc/hosts only; a DNS query goes to a
// closed loopback port and fails, so tests never send DNS off the machine.
func LoopbackResolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", "127.0.0.1:1")
	}}
}
