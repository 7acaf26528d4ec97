package exit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/libp2p/go-yamux/v5"
	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// loopbackResolver resolves from /etc/hosts only; any DNS query goes to a
// closed loopback port and fails, so tests never send DNS off the machine.
func loopbackResolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", "127.0.0.1:1")
	}}
}

// target is a TCP server on loopback that records every connection.
type target struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

// startTarget serves each connection: it reads until the client half-closes,
// then writes back the SHA-256 of what it read followed by reply.
func startTarget(t *testing.T, network, addr string, reply []byte) *target {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	tg := &target{ln: ln}
	tg.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.accepted.Add(1)
			tg.wg.Go(func() {
				defer c.Close()
				h := sha256.New()
				io.Copy(h, c)
				c.Write(h.Sum(nil))
				c.Write(reply)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); tg.wg.Wait() })
	return tg
}

func (tg *target) port() string {
	_, p, _ := net.SplitHostPort(tg.ln.Addr().String())
	return p
}

type exitHandle struct {
	addr   link.ExitAddr
	exit   *Server
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Serve's result, set before done is closed
}

// stop shuts the exit down and waits for Serve to return. It may be called
// more than once.
func (h *exitHandle) stop(t testing.TB) {
	h.cancel()
	<-h.done
	if h.err != nil {
		t.Errorf("exit Serve: %v", h.err)
	}
}

// restartableAddr returns a free loopback address below the kernel's
// ephemeral ports, for an exit a test stops and starts again there: no
// connection made meanwhile can take its port (testnet.RestartableAddr,
// which this package's tests cannot import).
func restartableAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+mrand.IntN(12000)))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free loopback port between 20000 and 32000")
	return ""
}

// startExit runs an exit on addr ("127.0.0.1:0" for a fresh port).
func startExit(t testing.TB, id *link.Identity, addr string, pol *policy.Policy) *exitHandle {
	t.Helper()
	return serveExitOn(t, Config{Link: link.Config{Identity: id}, Policy: pol}, addr)
}

// serveExit runs an exit with cfg on a fresh loopback port.
func serveExit(t testing.TB, cfg Config) *exitHandle {
	t.Helper()
	return serveExitOn(t, cfg, "127.0.0.1:0")
}

// serveExitOn runs an exit with cfg on addr, filling in an identity, the
// loopback resolver and a short drain where cfg leaves them out.
func serveExitOn(t testing.TB, cfg Config, addr string) *exitHandle {
	t.Helper()
	if cfg.Link.Identity == nil {
		cfg.Link.Identity = newIdentity(t)
	}
	if cfg.Resolver == nil {
		cfg.Resolver = loopbackResolver()
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 100 * time.Millisecond
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &exitHandle{addr: link.ExitAddr{ID: cfg.Link.Identity.ID(), Addr: ln.Addr().String()}, exit: e, cancel: cancel, done: make(chan struct{})}
	go func() { h.err = e.Serve(ctx, ln); close(h.done) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// startPool runs a pool with a fresh identity, linked to exit.
func startPool(t testing.TB, exit link.ExitAddr) *pool.Pool {
	t.Helper()
	return startPoolAs(t, newIdentity(t), exit)
}

// startPoolAs runs a pool with identity id, linked to exit.
func startPoolAs(t testing.TB, id *link.Identity, exit link.ExitAddr) *pool.Pool {
	t.Helper()
	return runPool(t, pool.Config{Link: link.Config{Identity: id}, Exits: []link.ExitAddr{exit}})
}

// runPool runs a pool with cfg until the test ends, with short back-offs
// and a 10 s wait for a link where cfg leaves them out.
func runPool(t testing.TB, cfg pool.Config) *pool.Pool {
	t.Helper()
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	if cfg.DialWait == 0 {
		cfg.DialWait = 10 * time.Second
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

func newIdentity(t testing.TB) *link.Identity {
	t.Helper()
	id, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// linkStream dials a link to addr with cfg and opens one stream on it; the
// caller closes the session.
func linkStream(t testing.TB, cfg link.Config, addr link.ExitAddr) (*link.Session, *yamux.Stream) {
	t.Helper()
	sess, err := link.Dial(t.Context(), cfg, addr)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sess.OpenStream(t.Context())
	if err != nil {
		sess.Close()
		t.Fatal(err)
	}
	return sess, st
}

// roundTrip sends payload on a flow to addr, half-closes, and checks that
// the target saw every byte and that its reply arrives intact.
func roundTrip(t *testing.T, p *pool.Pool, addr string, payload, reply []byte) net.Conn {
	t.Helper()
	c, err := p.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	sum := sha256.Sum256(payload)
	if len(got) < len(sum) || !bytes.Equal(got[:len(sum)], sum[:]) {
		t.Fatalf("target saw a different payload")
	}
	if !bytes.Equal(got[len(sum):], reply) {
		t.Fatalf("reply: got %d bytes, want %d identical", len(got)-len(sum), len(reply))
	}
	return c
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestFlowsReachTargets(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	pl := startPool(t, exit.addr)
	payload, reply := randBytes(4<<20), randBytes(3<<20)

	t4 := startTarget(t, "tcp4", "127.0.0.1:0", reply)
	c := roundTrip(t, pl, "127.0.0.1:"+t4.port(), payload, reply)
	if la := c.LocalAddr().(*net.TCPAddr); !la.IP.IsLoopback() || la.Port == 0 {
		t.Errorf("bound address %v, want the exit's loopback source", la)
	}
	t.Run("ipv6", func(t *testing.T) {
		t6 := startTarget(t, "tcp6", "[::1]:0", reply)
		roundTrip(t, pl, "[::1]:"+t6.port(), payload, reply)
	})
	t.Run("name resolved at the exit", func(t *testing.T) {
		roundTrip(t, pl, "localhost:"+t4.port(), payload, reply)
	})
	if n := t4.accepted.Load(); n != 2 {
		t.Errorf("target accepted %d connections, want 2", n)
	}
}

func TestExitPolicyRefusals(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", nil) // default policy: no loopback
	pl := startPool(t, exit.addr)
	tg := startTarget(t, "tcp4", "127.0.0.1:0", nil)
	for _, addr := range []string{"127.0.0.1:" + tg.port(), "localhost:" + tg.port(), "[::ffff:127.0.0.1]:" + tg.port()} {
		_, err := pl.DialContext(t.Context(), "tcp", addr)
		if st := wire.StatusOf(err); st != wire.StatusNotAllowed {
			t.Errorf("dial %s: status %v (%v), want not allowed", addr, st, err)
		}
	}
	if n := tg.accepted.Load(); n != 0 {
		t.Fatalf("target saw %d connections through a refusing exit", n)
	}
}

func TestExitStatusCodes(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	pl := startPool(t, exit.addr)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	tests := []struct {
		addr string
		want wire.Status
	}{
		{closed, wire.StatusConnectionRefused},
		{"no-such-host.invalid:80", wire.StatusHostUnreachable},
		{"127.0.0.1:25", wire.StatusNotAllowed},
	}
	for _, tt := range tests {
		_, err := pl.DialContext(t.Context(), "tcp", tt.addr)
		if st := wire.StatusOf(err); st != tt.want {
			t.Errorf("dial %s: %v (%v), want %v", tt.addr, st, err, tt.want)
		}
	}
	if _, err := pl.DialContext(t.Context(), "udp", closed); wire.StatusOf(err) != wire.StatusKindNotSupported {
		t.Errorf("udp dial: %v, want kind not supported", err)
	}
}

func TestPoolRefusesWrongExit(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	tg := startTarget(t, "tcp4", "127.0.0.1:0", nil)
	impostor := exit.addr
	impostor.ID = newIdentity(t).ID()
	p, err := pool.New(pool.Config{Link: link.Config{Identity: newIdentity(t)}, Exits: []link.ExitAddr{impostor},
		MinBackoff: 10 * time.Millisecond, DialWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	_, err = p.DialContext(t.Context(), "tcp", "127.0.0.1:"+tg.port())
	if !errors.Is(err, pool.ErrNoExit) || wire.StatusOf(err) != wire.StatusNetworkUnreachable {
		t.Fatalf("dial through an exit with the wrong ID: %v, want pool.ErrNoExit", err)
	}
	if st := p.Status(); st.State == pool.StateUp {
		t.Fatalf("pl state %v with a mismatched exit", st.State)
	}
	if n := tg.accepted.Load(); n != 0 {
		t.Fatalf("target saw %d connections", n)
	}
}

func TestExitAllowList(t *testing.T) {
	id := newIdentity(t)
	e, err := New(Config{Link: link.Config{Identity: id}, Policy: &policy.Policy{AllowPrivate: true},
		Allow: func(link.PeerID) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	_, _, err = pool.Dial(t.Context(), link.Config{Identity: newIdentity(t)}, link.ExitAddr{ID: id.ID(), Addr: ln.Addr().String()})
	if err == nil {
		t.Fatal("a client off the allow-list got a working link")
	}
}

// TestFailClosedAndReconnect stops the exit: flows must fail with nothing
// reaching the target; when the exit returns on the same address, the pool
// reconnects by itself and new flows work.
func TestFailClosedAndReconnect(t *testing.T) {
	id := newIdentity(t)
	exit := startExit(t, id, restartableAddr(t), &policy.Policy{AllowPrivate: true})
	pl := startPool(t, exit.addr)
	reply := []byte("pong")
	tg := startTarget(t, "tcp4", "127.0.0.1:0", reply)
	dst := "127.0.0.1:" + tg.port()
	roundTrip(t, pl, dst, []byte("ping"), reply)

	exit.stop(t)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	for i := range 5 {
		_, err := pl.DialContext(ctx, "tcp", dst)
		if wire.StatusOf(err) != wire.StatusNetworkUnreachable && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dial %d with the exit gone: %v, want network unreachable", i, err)
		}
	}
	if n := tg.accepted.Load(); n != 1 {
		t.Fatalf("target saw %d connections, want only the one made through the exit", n)
	}

	startExit(t, id, exit.addr.Addr, &policy.Policy{AllowPrivate: true})
	roundTrip(t, pl, dst, []byte("ping again"), reply) // waits for the new link
	if st := pl.Status(); st.State != pool.StateUp {
		t.Fatalf("pl state %v after reconnect", st.State)
	}
}

func TestThousandConcurrentFlows(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	pl := startPool(t, exit.addr)
	tg := startTarget(t, "tcp4", "127.0.0.1:0", []byte("ok"))
	dst := "127.0.0.1:" + tg.port()
	var g errgroup.Group
	for i := range 1000 {
		g.Go(func() error {
			c, err := pl.DialContext(t.Context(), "tcp", dst)
			if err != nil {
				return fmt.Errorf("flow %d: %w", i, err)
			}
			defer c.Close()
			msg := []byte("flow " + strconv.Itoa(i))
			c.Write(msg)
			c.(interface{ CloseWrite() error }).CloseWrite()
			got, err := io.ReadAll(c)
			sum := sha256.Sum256(msg)
			if err != nil || !bytes.Equal(got, append(sum[:], "ok"...)) {
				return fmt.Errorf("flow %d: got %q, %v", i, got, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := tg.accepted.Load(); n != 1000 {
		t.Fatalf("target accepted %d, want 1000", n)
	}
}

// TestExitLimits: a client over its stream cap gets "not allowed" for the
// extra flows, and a client beyond the exit's client cap gets no link.
func TestExitLimits(t *testing.T) {
	id := newIdentity(t)
	e, err := New(Config{Link: link.Config{Identity: id}, Policy: &policy.Policy{AllowPrivate: true},
		MaxClients: 1, MaxStreamsPerClient: 3})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Serve(ctx, ln); close(done) }()
	defer func() { cancel(); <-done }()
	addr := link.ExitAddr{ID: id.ID(), Addr: ln.Addr().String()}
	tg := startTarget(t, "tcp4", "127.0.0.1:0", nil)
	dst := "127.0.0.1:" + tg.port()

	pl := startPool(t, addr)
	var open []net.Conn
	for range 3 {
		c, err := pl.DialContext(t.Context(), "tcp", dst)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	if _, err := pl.DialContext(t.Context(), "tcp", dst); wire.StatusOf(err) != wire.StatusNotAllowed {
		t.Fatalf("fourth flow: %v, want not allowed", err)
	}
	open[0].Close()
	waitFor(t, "a stream slot to free", func() bool {
		c, err := pl.DialContext(t.Context(), "tcp", dst)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	for _, c := range open[1:] {
		c.Close()
	}

	if _, _, err := pool.Dial(t.Context(), link.Config{Identity: newIdentity(t)}, addr); err == nil {
		t.Fatal("a second client got a link from an exit capped at one")
	}
	if st := e.Stats(); st.RefusedFull != 1 || st.RefusedFlows < 1 {
		t.Fatalf("refused: %d clients, %d streams", st.RefusedFull, st.RefusedFlows)
	}
}
