package testnet

import (
	"crypto/sha256"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Target is a TCP server that records every connection it accepts. Each
// connection is served by Handler, or by Digest when Handler is nil.
type Target struct {
	Addr     string
	Accepted atomic.Int64

	ln net.Listener
	wg sync.WaitGroup
}

// Digest reads until the client half-closes, then writes the SHA-256 of
// what it read, followed by reply.
func Digest(reply []byte) func(net.Conn) {
	return func(c net.Conn) {
		h := sha256.New()
		io.Copy(h, c)
		c.Write(h.Sum(nil))
		c.Write(reply)
	}
}

// Echo writes back what it reads until the client half-closes.
func Echo(c net.Conn) { io.Copy(c, c) }

// StartTarget listens on addr ("127.0.0.1:0", "[::1]:0") and serves every
// connection with handle. It skips the test when addr cannot be bound (no
// IPv6 here, say).
func StartTarget(t testing.TB, addr string, handle func(net.Conn)) *Target {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	tg := &Target{Addr: ln.Addr().String(), ln: ln}
	tg.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.Accepted.Add(1)
			tg.wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); tg.wg.Wait() })
	return tg
}

// WaitFor polls cond until it holds, for state a test cannot be told about
// directly; it fails the test after 10 seconds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Port returns the target's port as text.
func (tg *Target) Port() string {
	_, p, _ := net.SplitHostPort(tg.Addr)
	return p
}
