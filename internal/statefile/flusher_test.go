package statefile

import (
	"sync"
	"testing"
	"time"
)

// held is a state and a run that writes it: each run says it began, waits
// for a release, then records the state it took.
type held struct {
	mu       sync.Mutex
	state    int   // the newest state
	pending  bool  // state changed since the last run took it
	written  []int // the states written, in order
	finished int   // runs that have finished

	began   chan struct{}
	release chan struct{}
}

func newHeld() *held {
	return &held{began: make(chan struct{}, 64), release: make(chan struct{}, 64)}
}

func (h *held) set(v int) {
	h.mu.Lock()
	h.state, h.pending = v, true
	h.mu.Unlock()
}

func (h *held) run() {
	h.mu.Lock()
	v, ok := h.state, h.pending
	h.pending = false
	h.mu.Unlock()
	h.began <- struct{}{}
	<-h.release
	h.mu.Lock()
	defer h.mu.Unlock()
	if ok {
		h.written = append(h.written, v)
	}
	h.finished++
}

func (h *held) snapshot() ([]int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.written...), h.finished
}

func recv(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// startHeld returns a Flusher whose first run, of state 1, has begun and
// is held.
func startHeld(t *testing.T) (*held, *Flusher) {
	t.Helper()
	h := newHeld()
	f := NewFlusher(h.run)
	h.set(1)
	f.Kick()
	recv(t, h.began, "the first run")
	return h, f
}

// TestFlusherLastStateWrittenLast: Kicks made while a run is held cost one
// more run, which writes the last state kicked for.
func TestFlusherLastStateWrittenLast(t *testing.T) {
	h, f := startHeld(t)
	for v := 2; v <= 20; v++ {
		h.set(v)
		f.Kick()
	}
	h.release <- struct{}{}
	recv(t, h.began, "the second run")
	h.release <- struct{}{}
	f.Wait()
	written, finished := h.snapshot()
	if finished != 2 || len(written) != 2 || written[0] != 1 || written[1] != 20 {
		t.Fatalf("%d runs wrote %v, want 2 runs writing [1 20]", finished, written)
	}
}

// TestFlusherWaitAfterBurst: a Wait made after a burst returns only once
// the run that serves the burst's last Kick has finished, not when the run
// under way at the time of the Wait ends.
func TestFlusherWaitAfterBurst(t *testing.T) {
	h, f := startHeld(t)
	h.set(2)
	f.Kick()
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		f.Wait()
	}()
	h.release <- struct{}{}
	recv(t, h.began, "the second run")
	select {
	case <-waited:
		t.Fatal("Wait returned before the run serving the last Kick finished")
	default:
	}
	h.release <- struct{}{}
	recv(t, waited, "Wait")
	if written, finished := h.snapshot(); finished != 2 || written[len(written)-1] != 2 {
		t.Fatalf("after Wait: %d runs finished, written %v; want 2, ending with 2", finished, written)
	}
}

// TestFlusherIdle: the goroutine ends once nothing is asked for, and a
// later Kick starts a new one; Wait with nothing asked returns at once.
func TestFlusherIdle(t *testing.T) {
	h := newHeld()
	f := NewFlusher(h.run)
	exited := make(chan struct{}, 8)
	f.exited = func() { exited <- struct{}{} }
	f.Wait() // nothing asked

	for round := 1; round <= 3; round++ {
		h.set(round)
		f.Kick()
		recv(t, h.began, "a run")
		h.release <- struct{}{}
		f.Wait()
		recv(t, exited, "the goroutine's end")
		f.mu.Lock()
		running := f.running
		f.mu.Unlock()
		if running {
			t.Fatalf("round %d: a goroutine still runs after Wait and its end", round)
		}
		select {
		case <-exited:
			t.Fatalf("round %d: more than one goroutine ended", round)
		default:
		}
	}
	if written, finished := h.snapshot(); finished != 3 || len(written) != 3 {
		t.Fatalf("%d runs wrote %v, want 3 runs", finished, written)
	}
}

// TestFlusherConcurrent: each of many writers sets its part of the state,
// kicks and waits; when its Wait returns, its part has been written.
func TestFlusherConcurrent(t *testing.T) {
	var (
		mu      sync.Mutex
		state   = map[int]bool{}
		written = map[int]bool{}
	)
	f := NewFlusher(func() {
		mu.Lock()
		defer mu.Unlock()
		for k := range state {
			written[k] = true
		}
	})
	var wg sync.WaitGroup
	errs := make(chan int, 64)
	for i := range 64 {
		wg.Go(func() {
			mu.Lock()
			state[i] = true
			mu.Unlock()
			f.Kick()
			f.Wait()
			mu.Lock()
			ok := written[i]
			mu.Unlock()
			if !ok {
				errs <- i
			}
		})
	}
	wg.Wait()
	close(errs)
	for i := range errs {
		t.Errorf("writer %d: its state was not written when Wait returned", i)
	}
}
