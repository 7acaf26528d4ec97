package discovery

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

// maxCached bounds the exits a client remembers between runs.
const maxCached = 64

// Cache keeps the verified descriptors of exits learned from other exits in
// a file, so that a client can start from them next time.
type Cache struct {
	Path string       // the file, JSON: a list of signed descriptors
	Log  *slog.Logger // nil discards

	mu sync.Mutex
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

// Add merges newly learned exits into the cache file.
func (c *Cache) Add(known []Known) {
	c.mu.Lock()
	defer c.mu.Unlock()
	merged := map[link.PeerID]Known{}
	for _, k := range c.Load() {
		merged[k.Desc.ID] = k
	}
	for _, k := range known {
		if old, ok := merged[k.Desc.ID]; !ok || k.Desc.IssuedAt.After(old.Desc.IssuedAt) {
			merged[k.Desc.ID] = k
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
	tmp := c.Path + ".tmp"
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err == nil {
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, c.Path)
		}
		if err != nil {
			c.log().Warn("cannot save learned exits", "file", c.Path, "err", err)
		}
	}
}

func (c *Cache) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}
