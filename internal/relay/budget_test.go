package relay

import (
	"bytes"
	"crypto/rand"
	"io"
	"sync"
	"testing"
)

// testBudget grants up to limit bytes and records what it was asked.
type testBudget struct {
	mu                 sync.Mutex
	limit, used, peak  int64
	granted, refused   int
	reserved, released int64
}

func (b *testBudget) Reserve(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		b.refused++
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	b.granted++
	b.reserved += n
	return true
}

func (b *testBudget) Release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.released += n
}

// moveBulk sends size random bytes app → far through SpliceBudget and
// checks they arrive intact, then ends the flow.
func moveBulk(t *testing.T, budget Budget, size int) {
	t.Helper()
	app, a := tcpPair(t)
	b, far := streamPair(t)
	done := make(chan Result, 1)
	go func() { done <- SpliceBudget(a, b, nil, nil, budget) }()
	h := &hop{app: app, far: far, done: done}

	want := make([]byte, size)
	rand.Read(want)
	go func() { app.Write(want); app.CloseWrite() }()
	got, err := io.ReadAll(far)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("far got %d bytes (%v), want the %d sent", len(got), err, size)
	}
	far.Close()
	h.wait(t)
}

// A direction borrows its large buffer from the budget, and gives back all
// it took when the flow ends.
func TestSpliceBudgetGrantsAndReturns(t *testing.T) {
	b := &testBudget{limit: 1 << 30}
	moveBulk(t, b, 4<<20)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.granted == 0 || b.reserved != int64(b.granted)*int64(bufSize) {
		t.Fatalf("granted %d, reserved %d bytes: want each grant of one buffer (%d bytes)", b.granted, b.reserved, bufSize)
	}
	if b.used != 0 || b.released != b.reserved {
		t.Fatalf("after the flow: %d bytes still reserved (%d taken, %d given back)", b.used, b.reserved, b.released)
	}
}

// A budget that refuses keeps a moving flow on its small buffer: the bytes
// still arrive, and no large buffer is held.
func TestSpliceBudgetRefusedKeepsSmallBuffer(t *testing.T) {
	b := &testBudget{limit: 0}
	before := largeHeld.Load()
	app, a := tcpPair(t)
	bs, far := streamPair(t)
	done := make(chan Result, 1)
	go func() { done <- SpliceBudget(a, bs, nil, nil, b) }()
	h := &hop{app: app, far: far, done: done}

	want := make([]byte, 1<<20)
	rand.Read(want)
	go app.Write(want)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(far, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("far got different bytes (%v)", err)
	}
	if n := largeHeld.Load() - before; n != 0 {
		t.Fatalf("%d large buffers held past a refusing budget", n)
	}
	b.mu.Lock()
	refused, granted := b.refused, b.granted
	b.mu.Unlock()
	if refused == 0 || granted != 0 {
		t.Fatalf("budget asked %d times and granted %d: want asked and never granted", refused, granted)
	}
	app.Close()
	far.Close()
	h.wait(t)
}
