package testnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/socks"
	"github.com/swarmvpn/swarmvpn/proxy"
)

const (
	soakFlows       = 10000
	soakDefaultHold = 60 * time.Second
	soakEchoEnv     = "SWARMVPN_SOAK_ECHO_TARGET"
	soakMsgLen      = 24
)

// soakEchoMain runs the soak's echo target: its own process, so that the
// target's end of each flow costs the test process no file descriptor. It
// prints its address and serves until its stdin closes.
func soakEchoMain() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(0)
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 256)
			io.CopyBuffer(c, readerOnly{c}, buf)
		}()
	}
}

type readerOnly struct{ io.Reader }

// startEchoProcess starts the soak's echo target and returns its address.
func startEchoProcess(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), soakEchoEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case addr, ok := <-line:
		if !ok {
			t.Fatal("echo target process printed no address")
		}
		return strings.TrimSpace(addr)
	case <-time.After(10 * time.Second):
		t.Fatal("echo target process printed no address within 10s")
	}
	return ""
}

// pipeListener hands the SOCKS5 server in-memory connections: the
// application's end of each flow then costs no file descriptor, so ten
// thousand flows fit the test process's limit.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

var pipeAddr = net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:1080"))

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr }

func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	app, srv := net.Pipe()
	select {
	case l.conns <- tcpAddrConn{srv}:
		return app, nil
	case <-ctx.Done():
	case <-l.done:
	}
	app.Close()
	srv.Close()
	return nil, errors.New("pipe listener: not accepted")
}

// tcpAddrConn reports loopback TCP addresses, as a proxy's accepted
// connection would.
type tcpAddrConn struct{ net.Conn }

func (tcpAddrConn) LocalAddr() net.Addr  { return pipeAddr }
func (tcpAddrConn) RemoteAddr() net.Addr { return pipeAddr }

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("soak: cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// soakHold is how long the soak holds its flows: 60s, or
// SWARMVPN_SOAK_DURATION when that is shorter.
func soakHold(t *testing.T) time.Duration {
	hold := soakDefaultHold
	if s := os.Getenv("SWARMVPN_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("SWARMVPN_SOAK_DURATION=%q: want a duration such as 20s", s)
		}
		hold = min(d, hold)
	}
	return hold
}

// TestSoakTenThousandFlows holds ten thousand flows open at once through
// SOCKS5, the pool, one link and the exit to an echo target, each echoing
// a few bytes now and then, then closes them all: every byte must come
// back as sent, and the goroutines and file descriptors must return to
// where they were.
func TestSoakTenThousandFlows(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	if raceEnabled {
		t.Skip("soak: skipped under the race detector, which allows at most 8128 goroutines; run it without -race")
	}
	// The test process holds one descriptor per flow (the exit's
	// connection to the target); the application's ends are in memory and
	// the target's in another process.
	need := uint64(soakFlows + 2000)
	raiseFileLimit(t, need)
	hold := soakHold(t)
	period := min(max(hold/8, 100*time.Millisecond), 5*time.Second)

	target := netip.MustParseAddrPort(startEchoProcess(t))
	exit := StartExitNode(t, exit.Config{MaxStreamsPerClient: 2 * soakFlows}, "127.0.0.1:0")
	id, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pl := runPool(t, pool.Config{Link: link.Config{Identity: id}, Exits: []link.ExitAddr{exit.Addr}})
	socksServer, err := proxy.NewSOCKS(proxy.SOCKSConfig{Dialer: pl})
	if err != nil {
		t.Fatal(err)
	}
	ln := newPipeListener()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); serve(t, "socks", func() error { return socksServer.Serve(ctx, ln) }) }()
	t.Cleanup(func() { cancel(); <-served })

	// One flow first, so the link and the pool's goroutines exist before
	// the baseline is taken.
	flow := func(ctx context.Context) (net.Conn, error) {
		c, err := ln.dial(ctx)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := (socks.Client{}).Handshake(c, socks.CmdConnect, target.String()); err != nil {
			c.Close()
			return nil, err
		}
		c.SetDeadline(time.Time{})
		return c, nil
	}
	echo := func(c net.Conn, msg []byte) error {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("echoed %q, sent %q", got, msg)
		}
		return c.SetDeadline(time.Time{})
	}
	warm, err := flow(t.Context())
	if err != nil {
		t.Fatalf("first flow: %v", err)
	}
	if err := echo(warm, []byte("warm-up flow, twenty-four")[:soakMsgLen]); err != nil {
		t.Fatal(err)
	}
	warm.Close()
	settle := func(what string, baseG, baseFD int) (g, fd int) {
		deadline := time.Now().Add(30 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			g, fd = runtime.NumGoroutine(), openFDs(t)
			st := exit.Exit.Stats()
			if g <= baseG+20 && fd <= baseFD+10 && st.Streams == 0 {
				return g, fd
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after 30s %d goroutines (baseline %d), %d open files (baseline %d), exit %+v",
					what, g, baseG, fd, baseFD, st)
			}
			<-tick.C
		}
	}
	baseG, baseFD := settle("after the first flow", 1<<30, 1<<30)
	t.Logf("baseline: %d goroutines, %d open files", baseG, baseFD)

	var (
		wg                sync.WaitGroup
		established       atomic.Int64
		echoes            atomic.Int64
		failed            atomic.Int64
		firstErr          atomic.Pointer[error]
		stop              = make(chan struct{})
		setupCtx, setupDn = context.WithTimeout(t.Context(), 60*time.Second)
		sem               = make(chan struct{}, 256) // flows being set up at once
	)
	defer setupDn()
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, &err)
	}
	start := time.Now()
	for i := range soakFlows {
		wg.Go(func() {
			sem <- struct{}{}
			c, err := flow(setupCtx)
			<-sem
			if err != nil {
				fail(fmt.Errorf("flow %d: open: %w", i, err))
				return
			}
			defer c.Close()
			established.Add(1)
			// A random first echo spreads the flows over the period.
			next := time.NewTimer(rand.N(period) + time.Millisecond)
			defer next.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				case <-next.C:
				}
				msg := fmt.Appendf(nil, "flow %05d echo %07d\n", i, seq)
				if err := echo(c, msg); err != nil {
					fail(fmt.Errorf("flow %d echo %d: %w", i, seq, err))
					return
				}
				echoes.Add(1)
				next.Reset(period)
			}
		})
	}
	// Wait for every flow to be open (or to have failed), with a bound.
	setupTick := time.NewTicker(100 * time.Millisecond)
	for established.Load()+failed.Load() < soakFlows && setupCtx.Err() == nil {
		<-setupTick.C
	}
	setupTick.Stop()
	t.Logf("%d flows open in %v; %d goroutines, %d open files", established.Load(),
		time.Since(start).Round(time.Millisecond), runtime.NumGoroutine(), openFDs(t))
	if n := established.Load(); n != soakFlows {
		close(stop)
		wg.Wait()
		t.Fatalf("%d of %d flows opened; first error: %v", n, soakFlows, errOf(&firstErr))
	}
	if st := exit.Exit.Stats(); st.Streams != soakFlows {
		t.Errorf("exit serves %d streams with %d flows open", st.Streams, soakFlows)
	}

	// Hold them all, echoing, for the soak's duration.
	holdT := time.NewTimer(hold)
	<-holdT.C
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d flows failed; first: %v", n, errOf(&firstErr))
	}
	if n := echoes.Load(); n < soakFlows {
		t.Fatalf("%d echoes in %v over %d flows: some flows never echoed", n, hold, soakFlows)
	}
	t.Logf("%d echoes compared over %v", echoes.Load(), hold)

	g, fd := settle("after closing every flow", baseG, baseFD)
	t.Logf("after: %d goroutines, %d open files", g, fd)
}

func errOf(p *atomic.Pointer[error]) error {
	if e := p.Load(); e != nil {
		return *e
	}
	return nil
}
