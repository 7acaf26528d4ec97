package portfwd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
)

// leaseWriter writes snapshots of the leases to their file in a goroutine
// of its own, which runs while there is a snapshot to write and then ends:
// the leases' lock is never held across disk I/O. Only the newest snapshot
// waits, and one goroutine at a time writes, so a burst of changes costs a
// write or two and the file never goes back to an older state.
type leaseWriter struct {
	path string
	// write replaces the file with b; nil writes a temporary file and
	// renames it over path. Tests hold writes with it.
	write func(path string, b []byte) error

	mu   sync.Mutex
	next *leaseFile    // the newest snapshot not yet written
	idle chan struct{} // closed when the running writer ends; nil when none runs
}

// put makes f the next snapshot to write, replacing one not yet written.
func (w *leaseWriter) put(f *leaseFile) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next = f
	if w.idle == nil {
		w.idle = make(chan struct{})
		go w.run(w.idle)
	}
}

// flush returns once the snapshots put before it are written.
func (w *leaseWriter) flush() {
	w.mu.Lock()
	idle := w.idle
	w.mu.Unlock()
	if idle != nil {
		<-idle
	}
}

// run writes the newest snapshot until none is waiting, then ends and
// closes idle.
func (w *leaseWriter) run(idle chan struct{}) {
	for {
		w.mu.Lock()
		f := w.next
		w.next = nil
		if f == nil {
			w.idle = nil
			close(idle)
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			continue
		}
		write := w.write
		if write == nil {
			write = writeAtomic
		}
		// Errors are not fatal: the leases still work in memory.
		write(w.path, b)
	}
}

// writeAtomic replaces path with b: a temporary file renamed over it.
func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
