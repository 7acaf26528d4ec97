package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/listener"
)

// LinkDelay is a TCP relay that makes a loopback link behave like a long
// one: it accepts connections, carries each to Upstream, and holds every
// chunk it reads for RTT/2 before writing it on, in each direction. It is a
// delay line, not a sleep per chunk: chunks are stamped when read and
// written when due, while reading goes on, so the link keeps its bandwidth
// (up to MaxQueued bytes in flight per direction) and gains only latency.
//
// It models propagation delay, not a TCP window: the kernel's own TCP
// connections around it see loopback. What bounds one flow over it is then
// the windows above TCP (yamux's stream window, ssh's channel window), as on
// a long link whose TCP buffers were tuned large.
type LinkDelay struct {
	// Upstream is where each connection is carried (host:port). Required.
	Upstream string
	// RTT is the round-trip time added; each direction gets half. Required.
	RTT time.Duration
	// MaxQueued bounds the bytes held per direction; default 64 MiB (1.3
	// GB/s at 50 ms).
	MaxQueued int
}

// chunkSize is the largest read a delay line makes at once.
const chunkSize = 64 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// Serve relays connections accepted on ln until ctx ends, then closes ln
// and every connection, and returns once all its goroutines have ended.
func (l *LinkDelay) Serve(ctx context.Context, ln net.Listener) error {
	if l.Upstream == "" || l.RTT <= 0 {
		ln.Close()
		return errors.New("link delay: needs an upstream address and a positive RTT")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	if err := listener.Accept(ctx, ln, &wg, nil, func(c net.Conn) { l.relay(ctx, c) }); err != nil {
		return fmt.Errorf("link delay: %w", err)
	}
	return nil
}

func (l *LinkDelay) relay(ctx context.Context, down net.Conn) {
	defer down.Close()
	var d net.Dialer
	up, err := d.DialContext(ctx, "tcp", l.Upstream)
	if err != nil {
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { down.Close(); up.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { delayCopy(up, down, l.RTT/2, l.MaxQueued) })
	delayCopy(down, up, l.RTT/2, l.MaxQueued)
	wg.Wait()
}

// chunk is what a delay line holds: bytes read at one time, or the end of
// the stream (data nil).
type chunk struct {
	data []byte
	buf  *[]byte // from chunkPool, when data is in it
	due  time.Time
	err  error // how the stream ended, for the last chunk
}

// delayCopy copies src to dst, writing each chunk delay after it was read,
// with at most maxQueued bytes (default 64 MiB) held at once. At the end of
// src it half-closes dst (closes it when it cannot), after the same delay.
// On an error in either direction it closes both. It returns when the
// stream has ended and its reader goroutine too.
func delayCopy(dst, src net.Conn, delay time.Duration, maxQueued int) error {
	if maxQueued <= 0 {
		maxQueued = 64 << 20
	}
	q := make(chan chunk, 4096)
	done := make(chan struct{})     // closed when the writer stops
	freed := make(chan struct{}, 1) // signalled when the writer releases bytes
	var mu sync.Mutex
	queued := 0

	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(q)
		for {
			// Wait for room.
			for {
				mu.Lock()
				full := queued >= maxQueued
				mu.Unlock()
				if !full {
					break
				}
				select {
				case <-freed:
				case <-done:
					return
				}
			}
			bp := chunkPool.Get().(*[]byte)
			n, err := src.Read(*bp)
			now := time.Now()
			if n > 0 {
				c := chunk{data: (*bp)[:n], buf: bp, due: now.Add(delay)}
				if n < chunkSize/4 {
					// A small read: keep only its bytes, so that many of them
					// do not pin a chunk each.
					c = chunk{data: append([]byte(nil), (*bp)[:n]...), due: c.due}
					chunkPool.Put(bp)
				}
				mu.Lock()
				queued += n
				mu.Unlock()
				select {
				case q <- c:
				case <-done:
					return
				}
			} else {
				chunkPool.Put(bp)
			}
			if err != nil {
				select {
				case q <- chunk{due: now.Add(delay), err: err}:
				case <-done:
				}
				return
			}
		}
	})

	err := writeDue(dst, q, freed, &mu, &queued)
	close(done)
	if err != nil {
		dst.Close()
		src.Close()
	}
	wg.Wait()
	return err
}

// writeDue writes each chunk from q to dst when it is due, and ends dst's
// stream as the last chunk says.
func writeDue(dst net.Conn, q <-chan chunk, freed chan<- struct{}, mu *sync.Mutex, queued *int) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for c := range q {
		if wait := time.Until(c.due); wait > 0 {
			timer.Reset(wait)
			<-timer.C
		}
		if c.data == nil {
			if !errors.Is(c.err, io.EOF) {
				return c.err
			}
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				return nil
			}
			return dst.Close()
		}
		_, err := dst.Write(c.data)
		n := len(c.data)
		if c.buf != nil {
			chunkPool.Put(c.buf)
		}
		mu.Lock()
		*queued -= n
		mu.Unlock()
		select {
		case freed <- struct{}{}:
		default:
		}
		if err != nil {
			return err
		}
	}
	return nil
}
