package portfwd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/statefile"
)

// heldWrites holds the leases' file writes: each says it began, waits for
// release, then writes as the leases would.
type heldWrites struct {
	began   chan struct{}
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func holdWrites(l *Leases) *heldWrites {
	h := &heldWrites{began: make(chan struct{}, 16), release: make(chan struct{})}
	l.file.write = func(path string, b []byte) error {
		h.mu.Lock()
		h.n++
		h.mu.Unlock()
		h.began <- struct{}{}
		<-h.release
		return statefile.WriteAtomic(path, b)
	}
	return h
}

func (h *heldWrites) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// readLeaseFile returns the ports the file holds, and which of them are
// idle (released).
func readLeaseFile(t *testing.T, file string) map[uint16]bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f leaseFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	out := map[uint16]bool{}
	for _, ls := range f.Leases {
		out[ls.Port] = ls.Carried > 0
	}
	return out
}

// TestLeasesWriteOffTheLock: while a write of the file is held (a slow
// disk), every method of Leases returns; the burst of changes made
// meanwhile is written in one write, and the file ends with the newest
// state; Close returns after it.
func TestLeasesWriteOffTheLock(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	l, err := NewLeases(LeasesConfig{Lo: 40000, Hi: 40099, PerClient: 1, File: file})
	if err != nil {
		t.Fatal(err)
	}
	h := holdWrites(l)
	first, err := l.Acquire(peer(1), noAddr, 40000, bindAny)
	if err != nil {
		t.Fatal(err)
	}
	<-h.began // the first write is held

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := byte(2); i <= 21; i++ {
			p, err := l.Acquire(peer(i), noAddr, 40000+uint16(i), bindAny)
			if err != nil {
				t.Error(err)
				return
			}
			l.Release(peer(i), p, uint64(i))
		}
		l.Holder(first)
		l.Free()
		l.InUse()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Leases blocked behind a held write")
	}
	close(h.release)
	l.Close()
	if n := h.count(); n != 2 {
		t.Fatalf("%d writes, want 2: the held one and one for the whole burst", n)
	}
	got := readLeaseFile(t, file)
	if len(got) != 21 || got[first] {
		t.Fatalf("file holds %v, want port %d in use and 20 released", got, first)
	}
	for i := 2; i <= 21; i++ {
		if released, ok := got[40000+uint16(i)]; !ok || !released {
			t.Fatalf("file holds %v: port %d not released", got, 40000+i)
		}
	}
}

// TestLeasesCloseFlushes: a change made just before Close is in the file
// when Close returns; the leases still work, and Close again writes the
// later change.
func TestLeasesCloseFlushes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state", "leases.json")
	l, err := NewLeases(LeasesConfig{Lo: 40000, Hi: 40099, File: file})
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Acquire(peer(1), noAddr, 0, bindAny)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if got := readLeaseFile(t, file); len(got) != 1 || got[p] {
		t.Fatalf("after Close the file holds %v, want port %d in use", got, p)
	}
	l.Release(peer(1), p, 7)
	l.Close()
	l.Close()
	if got := readLeaseFile(t, file); len(got) != 1 || !got[p] {
		t.Fatalf("after the second Close the file holds %v, want port %d released", got, p)
	}
}
