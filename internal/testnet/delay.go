package testnet

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// DelayProxy forwards TCP connections to target, holding every chunk for
// delay in each direction, like a long link. Throughput is not limited:
// chunks queue behind one another, each released delay after it arrived.
func DelayProxy(t testing.TB, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				var pair sync.WaitGroup
				pair.Go(func() { delayCopy(up, c, delay); up.(*net.TCPConn).CloseWrite() })
				delayCopy(c, up, delay)
				c.(*net.TCPConn).CloseWrite()
				pair.Wait()
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

type chunk struct {
	at time.Time
	b  []byte
}

func delayCopy(dst io.Writer, src io.Reader, delay time.Duration) {
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{time.Now().Add(delay), b[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d) // the delay being emulated, not synchronisation
		}
		if _, err := dst.Write(c.b); err != nil {
			for range q {
			}
			return
		}
	}
}
