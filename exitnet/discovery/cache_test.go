package discovery

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/statefile"
)

// cachedKnown is exit id's signed descriptor issued at issued.
func cachedKnown(t *testing.T, id *link.Identity, issued time.Time) Known {
	t.Helper()
	d := testDescriptor(id.ID())
	d.IssuedAt, d.Expires = issued, issued.Add(24*time.Hour)
	return Known{Desc: d, Signed: signTest(t, id, d)}
}

// heldWrites holds the cache's writes: each one waits for release after
// saying it began, then writes the file as the cache would.
type heldWrites struct {
	began   chan struct{}
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func holdWrites(c *Cache) *heldWrites {
	h := &heldWrites{began: make(chan struct{}, 16), release: make(chan struct{})}
	c.write = func(path string, b []byte) error {
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

// TestCacheBurstWritesLatest: while a write is held (a slow disk), Adds
// return at once; the burst they make is written in one write, which
// leaves the file with the newest descriptor of each exit; Close returns
// after it.
func TestCacheBurstWritesLatest(t *testing.T) {
	c := &Cache{Path: filepath.Join(t.TempDir(), "exits.json")}
	h := holdWrites(c)
	a, b := seededIdentity(t, 1), seededIdentity(t, 2)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)

	c.Add([]Known{cachedKnown(t, a, base)})
	<-h.began // the first write is held

	added := make(chan struct{})
	go func() {
		defer close(added)
		for i := 1; i <= 20; i++ {
			c.Add([]Known{cachedKnown(t, a, base.Add(time.Duration(i)*time.Minute))})
		}
		// An older one after the newest changes nothing.
		c.Add([]Known{cachedKnown(t, a, base.Add(5*time.Minute)), cachedKnown(t, b, base)})
	}()
	select {
	case <-added:
	case <-time.After(10 * time.Second):
		t.Fatal("Add blocked behind a held write")
	}
	close(h.release)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := h.count(); n != 2 {
		t.Fatalf("%d writes, want 2: the held one and one for the whole burst", n)
	}
	got := map[link.PeerID]time.Time{}
	for _, k := range c.Load() {
		got[k.Desc.ID] = k.Desc.IssuedAt
	}
	if want := base.Add(20 * time.Minute); !got[a.ID()].Equal(want) || len(got) != 2 {
		t.Fatalf("file holds %v, want a issued at %v and b", got, want)
	}
}

// TestCacheCloseFlushes: what was added just before Close is in the file
// when Close returns, and so is what is added after it and flushed by
// another Close; a Cache never added to closes at once.
func TestCacheCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "exits.json")
	c := &Cache{Path: path}
	id := seededIdentity(t, 3)
	c.Add([]Known{cachedKnown(t, id, time.Now().Add(-time.Minute).Truncate(time.Second))})
	c.Close()
	if got := c.Load(); len(got) != 1 || got[0].Desc.ID != id.ID() {
		t.Fatalf("after Close the file holds %v, want the exit added", got)
	}
	c.Add([]Known{cachedKnown(t, seededIdentity(t, 4), time.Now().Add(-time.Minute).Truncate(time.Second))})
	c.Close()
	c.Close()
	if got := c.Load(); len(got) != 2 {
		t.Fatalf("after the second Close the file holds %d exits, want 2", len(got))
	}
	(&Cache{Path: path}).Close() // never added to
}
