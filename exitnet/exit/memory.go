package exit

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-yamux/v5"
)

// errBufferCap refuses a stream window growth: the client's links have
// reserved as much receive-window memory as one client may make the exit
// buffer.
var errBufferCap = errors.New("client at its buffer cap")

// yamux reserves a stream's initial window at this priority, and window
// growth below it.
const prioStreamOpen = 255

// clientMemory accounts for the receive windows of one client's streams,
// on all its links. A window is memory the exit promises to buffer: a
// client that stops reading what the exit sends is harmless (the exit's
// writes block), but a client that sends faster than the destination takes
// fills the exit's receive windows. yamux grows a busy stream's window from
// 256 KiB up to 32 MiB; clientMemory refuses growth that would take the
// client past limit, so the windows of all its streams together stop
// growing there.
//
// The initial window of a new stream is always granted and not counted:
// refusing it would make yamux tear down the whole link, and counting it
// would let a torrent client's few hundred quiet flows use up the room
// that one busy flow needs to grow. Initial windows are bounded by the
// per-client flow cap instead: at most flows × 256 KiB, plus limit.
type clientMemory struct {
	limit int64
	used  atomic.Int64
	c     *limitCounters
}

func newClientMemory(limit int64, c *limitCounters) *clientMemory {
	return &clientMemory{limit: limit, c: c}
}

func (m *clientMemory) reserve(size int64) bool {
	u, ok := reserveUpTo(&m.used, m.limit, size)
	if !ok {
		m.c.windowRefused.Add(1)
		return false
	}
	m.c.notePeak(u)
	return true
}

// reserveUpTo adds n to used unless that would pass limit, and returns
// what used then holds and whether n was added.
func reserveUpTo(used *atomic.Int64, limit, n int64) (int64, bool) {
	for {
		u := used.Load()
		if u+n > limit {
			return u, false
		}
		if used.CompareAndSwap(u, u+n) {
			return u + n, true
		}
	}
}

// flowBuffers is the relay.Budget of one client's flows: the large buffers
// its moving flows read into (about 64 KiB a direction) count against a
// cap of their own, as large as the windows' cap. Without one, a client
// that sent a little on each of its thousands of flows and went quiet
// would make each hold a large buffer, outside any cap. Its own cap, not a
// share of the windows': a client whose windows have grown to their cap
// still moves new flows at full speed. A refused flow reads into its small
// buffer instead: slower, never stuck.
type flowBuffers struct {
	limit int64
	used  atomic.Int64
	c     *limitCounters
}

func (b *flowBuffers) Reserve(n int64) bool {
	if _, ok := reserveUpTo(&b.used, b.limit, n); !ok {
		b.c.flowBufferRefused.Add(1)
		return false
	}
	return true
}

func (b *flowBuffers) Release(n int64) { b.used.Add(-n) }

// linkMemory is a link's link.Config.MemoryManager: yamux asks it for one
// span per stream. The link learns whose it is only after the handshake;
// until then (a stream opened at once) its streams keep their initial
// windows and do not grow.
type linkMemory struct{ client atomic.Pointer[clientMemory] }

func (l *linkMemory) span() (yamux.MemoryManager, error) { return &memorySpan{link: l}, nil }

// memorySpan is what one stream holds of its client's memory.
type memorySpan struct {
	link *linkMemory
	mu   sync.Mutex
	m    *clientMemory // what held was reserved from
	held int64
	done bool
}

func (s *memorySpan) ReserveMemory(size int, prio uint8) error {
	if size < 0 {
		return errBufferCap
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return errBufferCap
	}
	if prio >= prioStreamOpen {
		return nil
	}
	if s.m == nil {
		if s.m = s.link.client.Load(); s.m == nil {
			return errBufferCap
		}
	}
	if !s.m.reserve(int64(size)) {
		return errBufferCap
	}
	s.held += int64(size)
	return nil
}

func (s *memorySpan) ReleaseMemory(size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(int64(size), s.held)
	if n <= 0 {
		return
	}
	s.held -= n
	s.m.used.Add(-n)
}

// Done returns everything the stream held; yamux calls it when the stream
// is gone.
func (s *memorySpan) Done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	if s.held > 0 {
		s.m.used.Add(-s.held)
		s.held = 0
	}
}
