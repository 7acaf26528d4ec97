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
	"sync/atomic"
)

// A direction reads into a buffer of quietSize while its flow is quiet and
// into one of bufSize, borrowed from a pool, while bytes are moving: a
// read that fills the small buffer borrows the large one, a read of less
// than releaseBelow gives it back. A torrent client holds thousands of
// flows that are idle most of the time, and its peers' last words before
// a pause are small messages (have, keep-alive, request); such a flow then
// holds only the small buffers, while a bulk flow moves bufSize (about
// 64 KiB) per system call, and one whose reads come in pieces of a few
// KiB (a peer slower than this machine) keeps the large buffer instead of trading it back
// and forth with a system call each time. A flow that stops right after a
// large read keeps the large buffer until its next small one.
//
// bufSize is what fills one frame of a link exactly: a multiplexed stream
// (yamux, 64 KiB frames with a 12-byte header) cuts each write into frames
// of at most 64 KiB − 12 bytes, and TLS each frame into records of 16 KiB.
// A read of 32 KiB made a frame of 32 KiB + 12, three records, the last of
// 12 bytes; a read of 64 KiB made a full frame and one of 12 bytes. Both
// cost a record and a frame to encrypt, send, receive and decrypt for
// nothing. 64 KiB − 112 leaves, besides the frame's header, room for the
// four records' overhead of a link nested in another (two hops), whose
// every frame then fills one frame of the outer link.
const (
	bufSize      = 64<<10 - 112
	quietSize    = 1 << 10
	releaseBelow = 4 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// largeSize is the moving buffer of SpliceLarge: about 256 KiB, four
// whole frames of a multiplexed stream (64 KiB − 12 bytes each), so that a
// full read is not cut into four frames and a fifth of 48 bytes.
const largeSize = 4 * (64<<10 - 12)

var largePool = sync.Pool{New: func() any { b := make([]byte, largeSize); return &b }}

// largeHeld counts the large buffers directions hold now.
var largeHeld atomic.Int64

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
func Splice(a, b net.Conn) Result { return SpliceCounting(a, b, nil, nil) }

// SpliceCounting is Splice that also adds each direction's bytes to aToB
// and bToA (either may be nil) as they are written, so that totals kept
// across flows move while a long flow is still open.
func SpliceCounting(a, b net.Conn, aToB, bToA *atomic.Uint64) Result {
	return splice(a, b, aToB, bToA, &bufPool, nil)
}

// SpliceLarge is SpliceCounting that moves up to 256 KiB per system call
// while bytes flow, for the few long bulk flows that carry whole links (a
// relay's): one such flow carries every flow of a client, and its system
// calls, not its bytes, are what cost.
func SpliceLarge(a, b net.Conn, aToB, bToA *atomic.Uint64) Result {
	return splice(a, b, aToB, bToA, &largePool, nil)
}

// A Budget bounds the moving buffers of a set of flows (one client's, at
// an exit): a direction borrows its large buffer only when Reserve grants
// the buffer's size, and gives it back with Release. A direction that is
// refused keeps reading into its small buffer: slower, never stuck. Without
// a budget, a peer that sends a little on each of thousands of flows and
// then goes quiet makes each hold a large buffer for as long as it likes.
type Budget interface {
	Reserve(n int64) bool
	Release(n int64)
}

// SpliceBudget is SpliceCounting whose directions borrow their large
// buffers (bufSize bytes each) from budget (nil: no bound).
func SpliceBudget(a, b net.Conn, aToB, bToA *atomic.Uint64, budget Budget) Result {
	return splice(a, b, aToB, bToA, &bufPool, budget)
}

func splice(a, b net.Conn, aToB, bToA *atomic.Uint64, pool *sync.Pool, budget Budget) Result {
	var r Result
	var wg sync.WaitGroup
	var once sync.Once
	abort := func(err error) {
		once.Do(func() {
			r.Err = err
			if err != nil {
				Reset(a)
				Reset(b)
			}
			a.Close()
			b.Close()
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.BtoA = copyHalf(a, b, bToA, abort, pool, budget)
	}()
	r.AtoB = copyHalf(b, a, aToB, abort, pool, budget)
	wg.Wait()
	a.Close()
	b.Close()
	return r
}

// copyHalf copies src to dst, then closes dst's write half (or all of dst
// when it cannot half-close).
func copyHalf(dst, src net.Conn, count *atomic.Uint64, abort func(error), pool *sync.Pool, budget Budget) int64 {
	quiet := make([]byte, quietSize)
	buf := quiet
	var big *[]byte
	var total int64
	var err error
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if count != nil && w > 0 {
				count.Add(uint64(w))
			}
			if werr == nil && w != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				err = werr
				break
			}
		}
		if rerr == io.EOF && n > 0 {
			// A yamux stream whose session has just died returns its last
			// bytes with the session's error, which may be a plain EOF:
			// only the next read tells an end of stream from a reset.
			continue
		}
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			}
			break
		}
		switch {
		case big == nil && n == len(quiet):
			if budget != nil && !budget.Reserve(bufSize) {
				break // the budget is spent: stay on the small buffer
			}
			big = pool.Get().(*[]byte)
			buf = *big
			largeHeld.Add(1)
		case big != nil && n < releaseBelow:
			giveBack(big, pool, budget)
			big, buf = nil, quiet
		}
	}
	if big != nil {
		giveBack(big, pool, budget)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		abort(err)
		return total
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return total
		}
	}
	abort(nil)
	return total
}

// giveBack returns a large buffer to its pool, and its size to budget.
func giveBack(big *[]byte, pool *sync.Pool, budget Budget) {
	pool.Put(big)
	largeHeld.Add(-1)
	if budget != nil {
		budget.Release(bufSize)
	}
}

// Reset marks c as aborted, so that its far end stops at once instead of
// waiting for the rest of a flow that will never come: a multiplexed
// stream (a Reset method) is reset, a TCP connection (SetLinger) sends a
// reset when it closes. It returns errors.ErrUnsupported for any other
// conn, which can only be closed.
func Reset(c net.Conn) error {
	switch c := c.(type) {
	case interface{ Reset() error }:
		return c.Reset()
	case interface{ SetLinger(sec int) error }:
		return c.SetLinger(0)
	}
	return errors.ErrUnsupported
}
