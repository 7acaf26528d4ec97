// Package relay splices two byte streams together in both directions,
// carrying half-close from each side to the other.
//
// relay imports nothing from swarmvpn.
package relay

import (
	"errors"
	"io"
	"net"
	"sync"
)

// bufSize is the copy buffer per direction. 32 KiB moves a bulk flow in
// few system calls per megabyte while staying small next to the link's
// stream window.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Result reports what a Splice moved.
type Result struct {
	AtoB, BtoA int64 // bytes copied from a to b and from b to a
	Err        error // the first error other than a clean end of stream
}

// Splice copies a→b and b→a until both directions have ended, then closes
// both. When one side ends its stream cleanly, Splice closes the write half
// of the other and keeps copying the opposite direction: a half-closed flow
// stays half-open as long as its peer wants. An error in either direction
// aborts both, and each side learns that its flow was cut short rather than
// finished: a side with a Reset method (a multiplexed stream) is reset, a
// side with SetLinger (TCP) sends a reset.
func Splice(a, b net.Conn) Result {
	var r Result
	var wg sync.WaitGroup
	var once sync.Once
	abort := func(err error) {
		once.Do(func() {
			r.Err = err
			if err != nil {
				reset(a)
				reset(b)
			}
			a.Close()
			b.Close()
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.BtoA = copyHalf(a, b, abort)
	}()
	r.AtoB = copyHalf(b, a, abort)
	wg.Wait()
	a.Close()
	b.Close()
	return r
}

// copyHalf copies src to dst, then closes dst's write half (or all of dst
// when it cannot half-close).
func copyHalf(dst, src net.Conn, abort func(error)) int64 {
	bp := bufPool.Get().(*[]byte)
	// Hide ReadFrom/WriteTo: for TCP they would allocate a buffer of their
	// own per call when the other side is not a socket.
	n, err := io.CopyBuffer(writerOnly{dst}, readerOnly{src}, *bp)
	bufPool.Put(bp)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		abort(err)
		return n
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return n
		}
	}
	abort(nil)
	return n
}

// reset ends c as aborted, so that its far end stops at once instead of
// waiting for the rest of a flow that will never come.
func reset(c net.Conn) {
	switch c := c.(type) {
	case interface{ Reset() error }:
		c.Reset()
	case interface{ SetLinger(sec int) error }:
		c.SetLinger(0)
	}
}

type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }
