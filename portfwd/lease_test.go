package portfwd

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

func peer(b byte) link.PeerID { return link.PeerID{b} }

func bindAny(uint16) error { return nil }

var noAddr netip.Addr // no source network: not rate bounded

func TestLeasesSticky(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := NewLeases(LeasesConfig{Lo: 40000, Hi: 40009, Reservation: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		a, err := l.Acquire(peer(1), noAddr, 0, bindAny)
		if err != nil {
			t.Fatal(err)
		}
		b, err := l.Acquire(peer(2), noAddr, a, bindAny) // asks for a's port
		if err != nil || b == a {
			t.Fatalf("second client got %d (%v); must not share %d", b, err, a)
		}
		l.Release(peer(1), a, 0)
		// Within the reservation window nobody else gets a's port, even
		// when asking for it, and peer 1 gets it back.
		time.Sleep(59 * time.Minute)
		if c, _ := l.Acquire(peer(3), noAddr, a, bindAny); c == a {
			t.Fatalf("a reserved port went to another client")
		}
		if got, err := l.Acquire(peer(1), noAddr, 0, bindAny); err != nil || got != a {
			t.Fatalf("reconnecting client got %d (%v), want its port %d", got, err, a)
		}
		// After the window a released port is free for anyone.
		l.Release(peer(1), a, 0)
		time.Sleep(61 * time.Minute)
		if h, ok := l.Holder(a); ok {
			t.Fatalf("port %d still held by %v after its reservation", a, h)
		}
		if got, err := l.Acquire(peer(4), noAddr, a, bindAny); err != nil || got != a {
			t.Fatalf("after expiry: got %d (%v), want %d", got, err, a)
		}
	})
}

func TestLeasesCapsAndRange(t *testing.T) {
	l, _ := NewLeases(LeasesConfig{Lo: 40000, Hi: 40002, PerClient: 1})
	p, err := l.Acquire(peer(1), noAddr, 40001, bindAny)
	if err != nil || p != 40001 {
		t.Fatalf("wanted port: got %d (%v)", p, err)
	}
	if _, err := l.Acquire(peer(1), noAddr, 0, bindAny); !errors.Is(err, ErrPortUnavailable) {
		t.Fatalf("second port for one client: %v, want ErrPortUnavailable", err)
	}
	seen := map[uint16]bool{p: true}
	for i := byte(2); i <= 3; i++ {
		q, err := l.Acquire(peer(i), noAddr, 50000, bindAny) // outside the range: ignored
		if err != nil || q < 40000 || q > 40002 || seen[q] {
			t.Fatalf("client %d got %d (%v)", i, q, err)
		}
		seen[q] = true
	}
	if _, err := l.Acquire(peer(4), noAddr, 0, bindAny); !errors.Is(err, ErrPortUnavailable) {
		t.Fatalf("full range: %v, want ErrPortUnavailable", err)
	}
	if l.Free() != 0 {
		t.Fatalf("Free() = %d with the range full", l.Free())
	}
}

func TestLeasesSkipUnbindablePorts(t *testing.T) {
	l, _ := NewLeases(LeasesConfig{Lo: 40000, Hi: 40003})
	busy := map[uint16]bool{40000: true, 40001: true, 40003: true}
	try := func(p uint16) error {
		if busy[p] {
			return fmt.Errorf("port %d in use", p)
		}
		return nil
	}
	if p, err := l.Acquire(peer(1), noAddr, 40000, try); err != nil || p != 40002 {
		t.Fatalf("got %d (%v), want the one bindable port 40002", p, err)
	}
	if _, err := l.Acquire(peer(2), noAddr, 0, try); !errors.Is(err, ErrPortUnavailable) {
		t.Fatalf("nothing bindable: %v", err)
	}
}

func TestLeasesSurviveRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	l, _ := NewLeases(LeasesConfig{Lo: 40000, Hi: 40099, File: file})
	p, _ := l.Acquire(peer(1), noAddr, 0, bindAny)
	l.Close() // the file is written
	// The exit dies without releasing: the port must stay reserved.
	l2, err := NewLeases(LeasesConfig{Lo: 40000, Hi: 40099, File: file})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l2.Close() })
	if h, ok := l2.Holder(p); !ok || h != peer(1) {
		t.Fatalf("after restart port %d is held by %v (%v), want peer 1", p, h, ok)
	}
	if q, _ := l2.Acquire(peer(2), noAddr, p, bindAny); q == p {
		t.Fatal("after restart a remembered port went to another client")
	}
	if q, err := l2.Acquire(peer(1), noAddr, 0, bindAny); err != nil || q != p {
		t.Fatalf("after restart the client got %d (%v), want %d", q, err, p)
	}
}

func TestNewLeasesValidates(t *testing.T) {
	for _, c := range []LeasesConfig{{}, {Lo: 10, Hi: 5}} {
		if _, err := NewLeases(c); err == nil {
			t.Errorf("NewLeases(%+v) accepted", c)
		}
	}
}
