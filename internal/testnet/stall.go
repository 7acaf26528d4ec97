package testnet

import (
	"io"
	"net"
	"sync"
	"testing"
)

// StallProxy forwards TCP connections to target until Stall is called;
// from then on it silently drops every byte both ways and closes nothing,
// like a link whose path has gone dead.
type StallProxy struct {
	Addr string

	mu      sync.Mutex
	stalled bool
}

func NewStallProxy(t testing.TB, target string) *StallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sp := &StallProxy{Addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var conns []net.Conn
	var connsMu sync.Mutex
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			connsMu.Lock()
			conns = append(conns, c, up)
			connsMu.Unlock()
			wg.Go(func() { sp.pipe(up, c) })
			wg.Go(func() { sp.pipe(c, up) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	return sp
}

// Stall makes the proxy swallow everything from now on.
func (sp *StallProxy) Stall() {
	sp.mu.Lock()
	sp.stalled = true
	sp.mu.Unlock()
}

func (sp *StallProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		sp.mu.Lock()
		stalled := sp.stalled
		sp.mu.Unlock()
		if stalled {
			continue // read and drop: the sender's writes still succeed
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}
