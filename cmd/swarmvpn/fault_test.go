package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/testnet"
	"github.com/swarmvpn/swarmvpn/proxy"
)

// startExitProc starts an exit process on loopback and returns it with
// its address.
func startExitProc(t *testing.T, dir, name string) (*proc, link.ExitAddr) {
	t.Helper()
	key := filepath.Join(dir, name+".key")
	if _, errOut, code := run(t, "keygen", "--key", key); code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	p := start(t, "exit", "--key", key, "--listen", "127.0.0.1:0", "--allow-private", "--log-format", "json")
	select {
	case line := <-p.stdout:
		a, err := link.ParseExitAddr(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("exit printed %q: %v", line, err)
		}
		return p, a
	case <-time.After(15 * time.Second):
		t.Fatalf("exit printed no address; output:\n%s", p.output())
	}
	return nil, link.ExitAddr{}
}

// pattern is the byte at offset i of the bulk transfer.
func pattern(i int64) byte { return byte(i*7 + i>>16) }

// TestExitKilledMidTransfer: the active exit's process is killed during a
// bulk download. The application's flow must end in an error, never in a
// clean end of stream after fewer bytes than were sent, and the bytes it
// did get must be the right ones; the client moves to the second exit, and
// new flows work through it; the target only ever sees connections from
// the exits; the client's goroutines return to where they were.
func TestExitKilledMidTransfer(t *testing.T) {
	const total = 256 << 20
	type accepted struct{ remote netip.AddrPort }
	conns := make(chan accepted, 16)
	tg := testnet.StartTarget(t, "127.0.0.1:0", func(c net.Conn) {
		conns <- accepted{c.RemoteAddr().(*net.TCPAddr).AddrPort()}
		if err := c.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
			return
		}
		first := make([]byte, 1)
		if _, err := io.ReadFull(c, first); err != nil {
			return
		}
		if first[0] == 'p' { // a ping: answer and end
			c.Write([]byte("pong"))
			return
		}
		buf := make([]byte, 64<<10)
		for off := int64(0); off < total; off += int64(len(buf)) {
			for i := range buf {
				buf[i] = pattern(off + int64(i))
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})

	dir := t.TempDir()
	exitA, addrA := startExitProc(t, dir, "a")
	exitB, addrB := startExitProc(t, dir, "b")
	procs := map[link.PeerID]*proc{addrA.ID: exitA, addrB.ID: exitB}

	baseG := runtime.NumGoroutine()
	id, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pl, err := pool.New(pool.Config{Link: link.Config{Identity: id, KeepAlive: time.Second},
		Exits: []link.ExitAddr{addrA, addrB}, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		DialWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	socks, err := proxy.NewSOCKS(proxy.SOCKSConfig{Dialer: pl})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { pl.Run(ctx) })
	wg.Go(func() { socks.Serve(ctx, ln) })
	stopClient := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stopClient)
	socksAddr := ln.Addr().String()

	roleOf := func(want link.PeerID) pool.Role {
		for _, e := range pl.Exits() {
			if e.Exit.ID == want {
				return e.Role
			}
		}
		return ""
	}
	testnet.WaitFor(t, "an active and a standby exit", func() bool {
		ra, rb := roleOf(addrA.ID), roleOf(addrB.ID)
		return ra == pool.RoleActive && rb == pool.RoleStandby || ra == pool.RoleStandby && rb == pool.RoleActive
	})

	// bound records what each flow's SOCKS reply said the exit's source
	// address was; the target must have seen exactly those.
	var bounds []netip.AddrPort
	ping := func() {
		t.Helper()
		c, bound, err := testnet.SOCKS5Dial(t.Context(), socksAddr, tg.Addr)
		if err != nil {
			t.Fatalf("ping flow: %v (pl %+v)", err, pl.Status())
		}
		defer c.Close()
		bounds = append(bounds, bound)
		c.Write([]byte("p"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "pong" {
			t.Fatalf("ping flow: %q, %v", got, err)
		}
	}
	ping()

	c, bound, err := testnet.SOCKS5Dial(t.Context(), socksAddr, tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bounds = append(bounds, bound)
	victim := pl.Status().Exit.ID
	c.Write([]byte("b"))
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 64<<10)
	var got int64
	var readErr error
	killed := false
	for {
		n, err := c.Read(buf)
		for i := range n {
			if buf[i] != pattern(got+int64(i)) {
				t.Fatalf("byte %d of the transfer is %d, want %d", got+int64(i), buf[i], pattern(got+int64(i)))
			}
		}
		got += int64(n)
		if err != nil {
			readErr = err
			break
		}
		if !killed && got >= 4<<20 {
			procs[victim].cmd.Process.Kill() // by PID, mid-transfer
			killed = true
		}
	}
	if !killed {
		t.Fatalf("the transfer ended after %d bytes (%v) before the exit could be killed", got, readErr)
	}
	if got == total {
		t.Fatalf("all %d bytes arrived although the exit carrying them was killed; the transfer was too small to test", total)
	}
	// Checked last, so that what follows is tested meanwhile.
	truncated := errors.Is(readErr, io.EOF)
	if errors.Is(readErr, os.ErrDeadlineExceeded) {
		t.Fatalf("the flow hung after %d bytes when its exit was killed", got)
	}
	c.Close()

	other := addrA.ID
	if victim == addrA.ID {
		other = addrB.ID
	}
	testnet.WaitFor(t, "the second exit to take over", func() bool { return pl.Status().Exit.ID == other && pl.Status().State == pool.StateUp })
	for range 3 {
		ping()
	}

	// Every connection the target saw came from an exit: its source is
	// the bound address an exit reported for one of the flows.
	close(conns)
	var seen []netip.AddrPort
	for a := range conns {
		seen = append(seen, a.remote)
	}
	if len(seen) != len(bounds) {
		t.Fatalf("target saw %d connections for %d flows", len(seen), len(bounds))
	}
	for i, s := range seen {
		if s != bounds[i] {
			t.Fatalf("target connection %d came from %v, but the exit reported its source as %v", i, s, bounds[i])
		}
	}

	stopClient()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for g := runtime.NumGoroutine(); g > baseG+5; g = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 15s after the client stopped, %d before it started", g, baseG)
		}
		<-tick.C
	}
	if truncated {
		t.Fatalf("the flow ended cleanly after %d of %d bytes when its exit was killed: truncation reported as success", got, total)
	}
}
