package portfwd

import (
	"encoding/json"
	"sync"

	"github.com/swarmvpn/swarmvpn/internal/statefile"
)

// leaseWriter writes snapshots of the leases to their file in a goroutine
// of its own (a statefile.Flusher), which runs while there is a snapshot to
// write and then ends: the leases' lock is never held across disk I/O. Only
// the newest snapshot waits, and one goroutine at a time writes, so a burst
// of changes costs a write or two and the file never goes back to an older
// state.
type leaseWriter struct {
	path string
	// write replaces the file with b; nil is statefile.WriteAtomic.
	// Tests hold writes with it.
	write func(path string, b []byte) error

	mu      sync.Mutex
	next    *leaseFile         // the newest snapshot not yet written
	flusher *statefile.Flusher // runs writeNext; made by the first put
}

// put makes f the next snapshot to write, replacing one not yet written.
func (w *leaseWriter) put(f *leaseFile) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next = f
	if w.flusher == nil {
		w.flusher = statefile.NewFlusher(w.writeNext)
	}
	w.flusher.Kick()
}

// flush returns once the snapshots put before it are written.
func (w *leaseWriter) flush() {
	w.mu.Lock()
	f := w.flusher
	w.mu.Unlock()
	if f != nil {
		f.Wait()
	}
}

// writeNext writes the newest snapshot, if one is waiting.
func (w *leaseWriter) writeNext() {
	w.mu.Lock()
	f := w.next
	w.next = nil
	w.mu.Unlock()
	if f == nil {
		return
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return
	}
	write := w.write
	if write == nil {
		write = statefile.WriteAtomic
	}
	// Errors are not fatal: the leases still work in memory.
	write(w.path, b)
}
