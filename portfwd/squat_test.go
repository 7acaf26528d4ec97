package portfwd

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// src returns an address in the i-th /24 of 198.18.0.0/15, so that each
// throwaway client comes from a network of its own unless a test says
// otherwise.
func src(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i), 1}) }

// TestLeasesSquattersYield: throwaway identities that take every port of
// the range and leave cannot deny a port to a new client, within the
// reservation window and across a restart; the reservation that yields is
// that of the client that carried least, then the longest idle.
func TestLeasesSquattersYield(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "forward-leases.json")
		cfg := LeasesConfig{Lo: 40000, Hi: 40010, File: file} // eleven ports, the default 24h reservation
		l, err := NewLeases(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { l.Close() }() // the one in use at the end
		// A client that carried a lot, then ten squatters that carried
		// nothing to speak of: every port is reserved.
		real, err := l.Acquire(peer(200), src(200), 0, bindAny)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		l.Release(peer(200), real, 5<<30)
		squat := map[uint16]byte{}
		for i := byte(1); i <= 10; i++ {
			p, err := l.Acquire(peer(i), src(int(i)), 0, bindAny)
			if err != nil {
				t.Fatalf("squatter %d: %v", i, err)
			}
			squat[p] = i
			time.Sleep(time.Second)
			l.Release(peer(i), p, 100)
		}
		if l.Free() != 11 {
			t.Fatalf("Free() = %d with every port only reserved, want 11: reservations yield", l.Free())
		}

		// An hour later the exit restarts; a new client asks.
		time.Sleep(time.Hour)
		l.Close()
		l, err = NewLeases(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.Acquire(peer(100), src(100), 0, bindAny)
		if err != nil {
			t.Fatalf("a new client was denied a port by idle reservations: %v", err)
		}
		// The first squatter's: least traffic, longest idle among those.
		if squat[got] != 1 {
			t.Fatalf("the new client got %d (squatter %d's), want squatter 1's, the longest idle of the least traffic", got, squat[got])
		}
		// Nine more new clients take the other squatters' ports, and the
		// client that carried 5 GiB keeps its port to the last.
		for i := 101; i <= 109; i++ {
			p, err := l.Acquire(peer(byte(i)), src(i), 0, bindAny)
			if err != nil {
				t.Fatalf("new client %d: %v", i, err)
			}
			if p == real {
				t.Fatalf("new client %d took the busy client's port while squatters' ports were idle", i)
			}
		}
		if h, _ := l.Holder(real); h != peer(200) {
			t.Fatalf("the busy client's port %d is held by %v", real, h)
		}
		if got, err := l.Acquire(peer(200), src(200), 0, bindAny); err != nil || got != real {
			t.Fatalf("the busy client came back to %d (%v), want its port %d", got, err, real)
		}
		if l.Yielded() != 10 {
			t.Fatalf("Yielded() = %d, want 10", l.Yielded())
		}
		// Now every port is in use: the refusal says so.
		_, err = l.Acquire(peer(150), src(150), 0, bindAny)
		if !errors.Is(err, ErrPortUnavailable) || wire.StatusOf(err) != wire.StatusPortsExhausted {
			t.Fatalf("full range: %v (status %v), want ports exhausted", err, wire.StatusOf(err))
		}
	})
}

// TestLeasesSourceRate: one source network creates at most
// NewPerSourceHour leases an hour, however many peer IDs it uses; other
// networks are not affected, a client taking back its own reservation is
// not counted, and the bound lifts as the hour passes.
func TestLeasesSourceRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := NewLeases(LeasesConfig{Lo: 40000, Hi: 40999, NewPerSourceHour: 4})
		from := func(i int) netip.Addr { return netip.MustParseAddr("203.0.113." + strconv.Itoa(i)) }
		var first uint16
		for i := range 4 {
			p, err := l.Acquire(peer(byte(i)), from(i), 0, bindAny) // one /24, four hosts
			if err != nil {
				t.Fatalf("lease %d: %v", i, err)
			}
			if i == 0 {
				first = p
			}
			l.Release(peer(byte(i)), p, 0)
			time.Sleep(10 * time.Minute)
		}
		_, err := l.Acquire(peer(9), from(200), 0, bindAny)
		if !errors.Is(err, ErrPortUnavailable) || wire.StatusOf(err) != wire.StatusForwardRateLimit {
			t.Fatalf("fifth lease from one /24 in an hour: %v (status %v), want the rate refusal", err, wire.StatusOf(err))
		}
		if _, err := l.Acquire(peer(10), netip.MustParseAddr("203.0.114.1"), 0, bindAny); err != nil {
			t.Fatalf("another /24: %v", err)
		}
		if p, err := l.Acquire(peer(0), from(0), 0, bindAny); err != nil || p != first {
			t.Fatalf("a client taking back its own reservation got %d (%v), want %d", p, err, first)
		}
		// The first creation is an hour old 20 minutes later (four were
		// 10 minutes apart): one more is allowed, not two.
		time.Sleep(21 * time.Minute)
		if _, err := l.Acquire(peer(11), from(11), 0, bindAny); err != nil {
			t.Fatalf("after the oldest creation aged out: %v", err)
		}
		if _, err := l.Acquire(peer(12), from(12), 0, bindAny); wire.StatusOf(err) != wire.StatusForwardRateLimit {
			t.Fatalf("second one: %v, want the rate refusal", err)
		}
	})
}

func TestSourceNetwork(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"192.0.2.77", "192.0.2.0/24"},
		{"::ffff:192.0.2.77", "192.0.2.0/24"},
		{"2001:db8:1:2ff:1::1", "2001:db8:1:200::/56"},
		{"fe80::1%eth0", "fe80::/56"},
	} {
		if got := SourceNetwork(netip.MustParseAddr(c.addr)); got.String() != c.want {
			t.Errorf("SourceNetwork(%s) = %s, want %s", c.addr, got, c.want)
		}
	}
	if SourceNetwork(netip.Addr{}).IsValid() {
		t.Error("the zero address has a source network")
	}
}

// TestLeasesRefusalStatus: each refusal carries its own status.
func TestLeasesRefusalStatus(t *testing.T) {
	l, _ := NewLeases(LeasesConfig{Lo: 40000, Hi: 40000})
	if _, err := l.Acquire(peer(1), src(1), 0, bindAny); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		p    byte
		want wire.Status
	}{{"second port", 1, wire.StatusForwardCap}, {"range in use", 2, wire.StatusPortsExhausted}} {
		_, err := l.Acquire(peer(c.p), src(int(c.p)), 0, bindAny)
		if !errors.Is(err, ErrPortUnavailable) || wire.StatusOf(err) != c.want {
			t.Errorf("%s: %v (status %v), want %v", c.name, err, wire.StatusOf(err), c.want)
		}
	}
}
