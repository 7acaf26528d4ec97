package pool

import (
	"fmt"
	"testing"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// TestLearnedExitsBounded: exits that tell of new exits at every link
// cannot grow the pool's list without bound; the most failed learned exits
// make room, and exits the user named are never evicted.
func TestLearnedExitsBounded(t *testing.T) {
	id, _ := link.NewIdentity()
	named, _ := link.NewIdentity()
	p, err := New(Config{Link: link.Config{Identity: id}, Exits: []link.ExitAddr{{ID: named.ID(), Addr: "127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	tell := func(n int) []discovery.Known {
		var ks []discovery.Known
		for i := range n {
			other, _ := link.NewIdentity()
			ks = append(ks, discovery.Known{Desc: discovery.Descriptor{ID: other.ID(), Addrs: []string{fmt.Sprintf("127.0.0.1:%d", 1000+i)}}})
		}
		return ks
	}
	p.mu.Lock()
	p.learnLocked(tell(maxLearned))
	for _, c := range p.cands {
		if c.source == discovery.SourceExchange && c.order == 2 {
			c.failures = 5 // the first learned, failing: the first to go
		}
	}
	first := tell(1)
	p.learnLocked(first)
	for range 10 {
		p.learnLocked(tell(maxLearned))
	}
	learned, haveNamed, haveFirst := 0, false, false
	for cid, c := range p.cands {
		switch {
		case c.source == discovery.SourceExchange:
			learned++
		case cid == named.ID():
			haveNamed = true
		}
		if cid == first[0].Desc.ID {
			haveFirst = true
		}
	}
	p.mu.Unlock()
	if learned != maxLearned || !haveNamed {
		t.Fatalf("%d learned exits (want %d), the named one kept: %v", learned, maxLearned, haveNamed)
	}
	if haveFirst {
		t.Errorf("an exit learned long ago outlived %d newer ones", 10*maxLearned)
	}
}
