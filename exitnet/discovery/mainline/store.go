package mainline

import (
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
)

// maxStoredItems bounds the BEP 44 items this node stores for others.
const maxStoredItems = 4096

// itemStore is a bounded bep44.Store: when full, a new target evicts the item stored longest ago.
// (The library's Wrapper around it checks signatures, sizes and sequence numbers, and expires
// items on read.)
type itemStore struct {
	mu sync.Mutex
	m  map[bep44.Target]storedItem
}

type storedItem struct {
	item *bep44.Item
	at   time.Time
}

var _ bep44.Store = (*itemStore)(nil)

func newItemStore() *itemStore { return &itemStore{m: make(map[bep44.Target]storedItem)} }

func (s *itemStore) Put(i *bep44.Item) error {
	t := i.Target()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[t]; !ok && len(s.m) >= maxStoredItems {
		var oldest bep44.Target
		var at time.Time
		for k, v := range s.m {
			if at.IsZero() || v.at.Before(at) {
				oldest, at = k, v.at
			}
		}
		delete(s.m, oldest)
	}
	s.m[t] = storedItem{item: i, at: time.Now()}
	return nil
}

func (s *itemStore) Get(t bep44.Target) (*bep44.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[t]
	if !ok {
		return nil, bep44.ErrItemNotFound
	}
	return v.item, nil
}

func (s *itemStore) Del(t bep44.Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, t)
	return nil
}

func (s *itemStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
