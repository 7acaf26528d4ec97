package exit

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

// forwardRange returns a range of n ports for a test's leases, below the
// kernel's ephemeral ports (from 32768 by default; the links' own sockets
// would hold some of a range there) and restartableAddr's.
func forwardRange(n int) (lo, hi uint16) {
	lo = uint16(10000 + rand.N(9000))
	return lo, lo + uint16(n) - 1
}

func newLeases(t *testing.T, cfg portfwd.LeasesConfig) *portfwd.Leases {
	t.Helper()
	l, err := portfwd.NewLeases(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() }) // before the file's directory goes
	return l
}

// askForward links to exit as id, asks for a port, and returns the
// exit's answer with the link, which holds the forward while it is open.
func askForward(t *testing.T, exit link.ExitAddr, id *link.Identity) (wire.Response, *link.Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sess, err := link.Dial(ctx, link.Config{Identity: id}, exit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := wire.Call(ctx, st, wire.Request{Kind: wire.KindForward}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return resp, sess
}

// TestForwardSquattersCannotDeny: throwaway identities take every port of
// the range and leave. A new client still gets a port, and again after
// the exit restarts with the leases it kept in its file. (Before, the
// reservations held the range for a day and every new client was
// refused.)
func TestForwardSquattersCannotDeny(t *testing.T) {
	lo, hi := forwardRange(11)
	cfg := portfwd.LeasesConfig{Lo: lo, Hi: hi, File: filepath.Join(t.TempDir(), "forward-leases.json")}
	id := newIdentity(t)
	addr := restartableAddr(t)
	var leases *portfwd.Leases
	start := func() *exitHandle {
		leases = newLeases(t, cfg)
		return serveExitOn(t, Config{Link: link.Config{Identity: id}, Ports: leases}, addr)
	}
	exit := start()
	squat := func(n int) {
		for i := range n {
			resp, sess := askForward(t, exit.addr, newIdentity(t))
			if resp.Status != wire.StatusOK {
				t.Fatalf("squatter %d: %v", i, resp.Status)
			}
			sess.Close()
		}
		waitFor(t, "the squatters' forwards released", func() bool { return exit.exit.Stats().Forward.Active == 0 })
	}
	squat(11)
	resp, _ := askForward(t, exit.addr, newIdentity(t))
	if resp.Status != wire.StatusOK || resp.Bound.Port < lo || resp.Bound.Port > hi {
		t.Fatalf("a new client after 11 squatters: %v port %d, want a port of %d-%d", resp.Status, resp.Bound.Port, lo, hi)
	}

	// Across a restart: the file holds the reservations.
	exit.stop(t)
	leases.Close() // as the exit's program does when the exit has stopped
	exit = start()
	squat(10) // the range is full of reservations again, one of them the new client's
	resp, _ = askForward(t, exit.addr, newIdentity(t))
	if resp.Status != wire.StatusOK {
		t.Fatalf("a new client after a restart: %v, want a port", resp.Status)
	}
}

// TestForwardRefusalReasons: each reason for refusing a forward has its
// own status, counted by reason, and the client's pool shows it.
func TestForwardRefusalReasons(t *testing.T) {
	t.Run("cap", func(t *testing.T) {
		lo, hi := forwardRange(4)
		exit := serveExit(t, Config{Ports: newLeases(t, portfwd.LeasesConfig{Lo: lo, Hi: hi})})
		id := newIdentity(t)
		if resp, _ := askForward(t, exit.addr, id); resp.Status != wire.StatusOK {
			t.Fatal(resp.Status)
		}
		if resp, _ := askForward(t, exit.addr, id); resp.Status != wire.StatusForwardCap {
			t.Fatalf("second port for one client: %v, want %v", resp.Status, wire.StatusForwardCap)
		}
		if n := exit.exit.Stats().Forward.RefusedCap; n != 1 {
			t.Fatalf("RefusedCap = %d", n)
		}
	})
	t.Run("exhausted", func(t *testing.T) {
		lo, hi := forwardRange(1)
		exit := serveExit(t, Config{Ports: newLeases(t, portfwd.LeasesConfig{Lo: lo, Hi: hi})})
		if resp, _ := askForward(t, exit.addr, newIdentity(t)); resp.Status != wire.StatusOK {
			t.Fatal(resp.Status)
		}
		if resp, _ := askForward(t, exit.addr, newIdentity(t)); resp.Status != wire.StatusPortsExhausted {
			t.Fatalf("range in use: %v, want %v", resp.Status, wire.StatusPortsExhausted)
		}
		// A client's pool says why it has no port.
		p := runPool(t, pool.Config{Link: link.Config{Identity: newIdentity(t)}, Exits: []link.ExitAddr{exit.addr}, Forward: true})
		waitFor(t, "the pool's link up", func() bool { return p.Status().State == pool.StateUp })
		if st := p.Status(); st.ForwardedPort != 0 || !strings.Contains(st.ForwardError, wire.StatusPortsExhausted.String()) {
			t.Fatalf("pool status %+v: want no port and the reason %q", st, wire.StatusPortsExhausted)
		}
		if n := exit.exit.Stats().Forward.RefusedExhausted; n != 2 {
			t.Fatalf("RefusedExhausted = %d, want 2", n)
		}
	})
	t.Run("rate", func(t *testing.T) {
		lo, hi := forwardRange(8)
		exit := serveExit(t, Config{Ports: newLeases(t, portfwd.LeasesConfig{Lo: lo, Hi: hi, NewPerSourceHour: 2})})
		for range 2 {
			if resp, _ := askForward(t, exit.addr, newIdentity(t)); resp.Status != wire.StatusOK {
				t.Fatal(resp.Status)
			}
		}
		if resp, _ := askForward(t, exit.addr, newIdentity(t)); resp.Status != wire.StatusForwardRateLimit {
			t.Fatalf("third lease from 127.0.0.0/24: %v, want %v", resp.Status, wire.StatusForwardRateLimit)
		}
		if n := exit.exit.Stats().Forward.RefusedRate; n != 1 {
			t.Fatalf("RefusedRate = %d", n)
		}
	})
	for _, s := range []wire.Status{wire.StatusNotAllowed, wire.StatusForwardCap, wire.StatusPortsExhausted, wire.StatusForwardRateLimit} {
		for _, o := range []wire.Status{wire.StatusNotAllowed, wire.StatusForwardCap, wire.StatusPortsExhausted, wire.StatusForwardRateLimit} {
			if s != o && s.String() == o.String() {
				t.Errorf("statuses %d and %d read the same: %q", s, o, s)
			}
		}
	}
}
