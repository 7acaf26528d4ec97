package statefile

import "sync"

// Flusher runs a function in a goroutine of its own when asked: Kick asks
// for a run, Wait waits for the runs asked before it. The goroutine runs
// while a run is asked for and then ends, so an idle Flusher holds none.
//
// Runs happen one at a time. Kicks made before a run starts are served by
// that one run; a Kick made during a run causes one more run after it. The
// function keeps its own pending state and takes the newest of it when it
// runs, so a burst of changes costs a run or two and the last state is
// what is written last.
type Flusher struct {
	run func()

	// exited, when set (by tests), is called as the goroutine ends.
	exited func()

	mu      sync.Mutex
	cond    sync.Cond
	asked   uint64 // Kicks so far
	started uint64 // asked when the current or last run started
	done    uint64 // asked when the last finished run started
	running bool   // a goroutine runs
}

// NewFlusher returns a Flusher that calls run when kicked.
func NewFlusher(run func()) *Flusher {
	f := &Flusher{run: run}
	f.cond.L = &f.mu
	return f
}

// Kick asks for a run; call it once the state to write is in place. It
// returns at once and never waits for a run, so it may be called with
// locks held that run takes.
func (f *Flusher) Kick() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	if !f.running {
		f.running = true
		go f.loop()
	}
}

// Wait returns once every run asked for before it has finished.
func (f *Flusher) Wait() {
	f.mu.Lock()
	defer f.mu.Unlock()
	target := f.asked
	for f.done < target {
		f.cond.Wait()
	}
}

// loop runs while a run is asked for, then ends.
func (f *Flusher) loop() {
	if f.exited != nil {
		defer f.exited()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.started < f.asked {
		gen := f.asked
		f.started = gen
		f.mu.Unlock()
		f.run()
		f.mu.Lock()
		f.done = gen
		f.cond.Broadcast()
	}
	f.running = false
}
