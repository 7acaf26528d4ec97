package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet"
)

// maxCachedExits bounds the exits a client remembers between runs.
const maxCachedExits = 64

// exitCache keeps the verified descriptors of exits learned from other
// exits, so the client can start from them next time.
type exitCache struct {
	path string
	log  *slog.Logger
	mu   sync.Mutex
}

// load returns the cached exits whose descriptors still verify.
func (c *exitCache) load() []exitnet.Known {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return nil
	}
	var blobs [][]byte
	if err := json.Unmarshal(b, &blobs); err != nil {
		c.log.Warn("ignoring a corrupt exit cache", "file", c.path, "err", err)
		return nil
	}
	var out []exitnet.Known
	now := time.Now()
	for _, blob := range blobs {
		s, err := exitnet.ParseSignedDescriptor(blob)
		if err != nil {
			continue
		}
		d, err := s.Verify([32]byte{}, now)
		if err != nil || len(d.Addrs) == 0 {
			continue // expired or forged: dropped
		}
		out = append(out, exitnet.Known{Desc: d, Signed: s})
	}
	return out
}

// add merges newly learned exits into the cache file.
func (c *exitCache) add(known []exitnet.Known) {
	c.mu.Lock()
	defer c.mu.Unlock()
	merged := map[[32]byte]exitnet.Known{}
	for _, k := range c.load() {
		merged[k.Desc.ID] = k
	}
	for _, k := range known {
		if old, ok := merged[k.Desc.ID]; !ok || k.Desc.IssuedAt.After(old.Desc.IssuedAt) {
			merged[k.Desc.ID] = k
		}
	}
	var blobs [][]byte
	for _, k := range merged {
		if len(blobs) == maxCachedExits {
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
	tmp := c.path + ".tmp"
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err == nil {
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, c.path)
		}
		if err != nil {
			c.log.Warn("cannot save learned exits", "file", c.path, "err", err)
		}
	}
}
