package discovery

import (
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/statefile"
)

// maxCached bounds the exits a client remembers between runs.
const maxCached = 64

// maxPending bounds the exits added and not yet written: more than the
// file keeps, so that a burst is written whole when it fits.
const maxPending = 4 * maxCached

// Cache keeps the verified descriptors of exits learned from other exits in
// a file, so that a client can start from them next time.
//
// Add never touches the disk: it hands the exits to a writer goroutine (a
// statefile.Flusher), which runs while there is something to write and
// then ends. It merges everything added meanwhile with the file and writes
// it, so a burst of Adds costs one write or two, and the writes, one at a
// time, never put an older state after a newer one. Close waits until all that was added is
// written.
type Cache struct {
	Path string       // the file, JSON: a list of signed descriptors
	Log  *slog.Logger // nil discards

	// write replaces the file with b; nil is statefile.WriteAtomic.
	// Tests hold writes with it.
	write func(path string, b []byte) error

	mu      sync.Mutex
	pending map[link.PeerID]Known // added, not yet written: the newest per exit
	flusher *statefile.Flusher    // runs flush; made by the first Add
}

// Load returns the cached exits whose descriptors still verify.
func (c *Cache) Load() []Known {
	b, err := os.ReadFile(c.Path)
	if err != nil {
		return nil
	}
	var blobs [][]byte
	if err := json.Unmarshal(b, &blobs); err != nil {
		c.log().Warn("ignoring a corrupt exit cache", "file", c.Path, "err", err)
		return nil
	}
	var out []Known
	now := time.Now()
	for _, blob := range blobs {
		s, err := ParseSignedDescriptor(blob)
		if err != nil {
			continue
		}
		d, err := s.Verify(link.PeerID{}, now)
		if err != nil || len(d.Addrs) == 0 {
			continue // expired or forged: dropped
		}
		out = append(out, Known{Desc: d, Signed: s})
	}
	return out
}

// Add merges newly learned exits into the cache file, soon: it returns at
// once, and the writer saves them.
func (c *Cache) Add(known []Known) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = make(map[link.PeerID]Known)
	}
	for _, k := range known {
		old, ok := c.pending[k.Desc.ID]
		switch {
		case !ok && len(c.pending) >= maxPending:
			// The file keeps fewer than this anyway.
		case !ok || k.Desc.IssuedAt.After(old.Desc.IssuedAt):
			c.pending[k.Desc.ID] = k
		}
	}
	if len(c.pending) > 0 {
		if c.flusher == nil {
			c.flusher = statefile.NewFlusher(c.flush)
		}
		c.flusher.Kick()
	}
}

// Close returns once everything added before it is in the file. The
// Cache stays usable; Close may be called more than once.
func (c *Cache) Close() error {
	c.mu.Lock()
	f := c.flusher
	c.mu.Unlock()
	if f != nil {
		f.Wait()
	}
	return nil
}

// flush writes what is pending, if anything is.
func (c *Cache) flush() {
	c.mu.Lock()
	batch := c.pending
	c.pending = nil
	c.mu.Unlock()
	if len(batch) > 0 {
		c.save(batch)
	}
}

// save merges batch with the file and writes the result.
func (c *Cache) save(batch map[link.PeerID]Known) {
	merged := map[link.PeerID]Known{}
	for _, k := range c.Load() {
		merged[k.Desc.ID] = k
	}
	for id, k := range batch {
		if old, ok := merged[id]; !ok || k.Desc.IssuedAt.After(old.Desc.IssuedAt) {
			merged[id] = k
		}
	}
	var blobs [][]byte
	for _, k := range merged {
		if len(blobs) == maxCached {
			break
		}
		if b, err := k.Signed.MarshalBinary(); err == nil {
			blobs = append(blobs, b)
		}
	}
	b, err := json.Marshal(blobs)
	if err != nil {
		return
	}
	write := c.write
	if write == nil {
		write = statefile.WriteAtomic
	}
	if err := write(c.Path, b); err != nil {
		c.log().Warn("cannot save learned exits", "file", c.Path, "err", err)
	}
}

func (c *Cache) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}
