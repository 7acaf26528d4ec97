package portfwd

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

// ErrPortUnavailable means no port of the range could be lent to a client.
var ErrPortUnavailable = errors.New("no forwarded port available")

// LeasesConfig configures Leases. The zero value of a field means its
// default.
type LeasesConfig struct {
	// Lo and Hi bound the ports the exit lends, inclusive. Required.
	Lo, Hi uint16
	// PerClient caps the ports one client holds at once. Default 1.
	PerClient int
	// Reservation is how long a port stays reserved for a client after its
	// forward ends, so that it gets the same port back when it reconnects.
	// Default 24h.
	Reservation time.Duration
	// File, when set, keeps the leases across restarts of the exit.
	File string
}

// Leases lends ports of a range to clients: each client keeps its port
// for the reservation window after it goes away, two clients never share
// one, and each holds at most PerClient.
type Leases struct {
	cfg LeasesConfig
	mu  sync.Mutex
	by  map[uint16]*lease
}

type lease struct {
	Peer    link.PeerID `json:"peer"`
	Port    uint16      `json:"port"`
	Expires time.Time   `json:"expires"` // for a lease not in use
	active  bool
}

// NewLeases validates cfg and loads the leases File holds, dropping expired
// ones.
func NewLeases(cfg LeasesConfig) (*Leases, error) {
	if cfg.Lo == 0 || cfg.Hi < cfg.Lo {
		return nil, fmt.Errorf("forward port range %d-%d: want LO-HI with 0 < LO <= HI", cfg.Lo, cfg.Hi)
	}
	if cfg.PerClient <= 0 {
		cfg.PerClient = 1
	}
	if cfg.Reservation <= 0 {
		cfg.Reservation = 24 * time.Hour
	}
	l := &Leases{cfg: cfg, by: make(map[uint16]*lease)}
	if cfg.File != "" {
		if err := l.load(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Acquire lends peer a port and calls try with it; try binds the port and
// returns an error when it cannot (another program holds it), and Acquire
// then tries another. A port the peer still has reserved comes first, then
// want, then random free ports of the range.
func (l *Leases) Acquire(peer link.PeerID, want uint16, try func(port uint16) error) (uint16, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.expire(now)

	var mine []uint16
	active := 0
	for port, ls := range l.by {
		if ls.Peer == peer {
			if ls.active {
				active++
			} else {
				mine = append(mine, port)
			}
		}
	}
	if active >= l.cfg.PerClient {
		return 0, fmt.Errorf("%w: client already holds %d forwarded port(s), the most this exit allows", ErrPortUnavailable, active)
	}
	candidates := mine
	if want != 0 && want >= l.cfg.Lo && want <= l.cfg.Hi {
		candidates = append(candidates, want)
	}
	var lastErr error
	attempt := func(port uint16) bool {
		if ls := l.by[port]; ls != nil && (ls.Peer != peer || ls.active) {
			return false // someone else's, or already in use
		}
		if err := try(port); err != nil {
			lastErr = err
			return false
		}
		l.by[port] = &lease{Peer: peer, Port: port, active: true}
		l.save(now)
		return true
	}
	for _, port := range candidates {
		if attempt(port) {
			return port, nil
		}
	}
	// Random probing finds a free port quickly in a sparse range and does
	// not hand out ports in an order an observer could predict; a full scan
	// from a random start settles a dense one.
	span := int(l.cfg.Hi) - int(l.cfg.Lo) + 1
	start := rand.N(span)
	for i := range span {
		port := l.cfg.Lo + uint16((start+i)%span)
		if attempt(port) {
			return port, nil
		}
	}
	if lastErr != nil {
		return 0, fmt.Errorf("%w: %v", ErrPortUnavailable, lastErr)
	}
	return 0, ErrPortUnavailable
}

// Release ends peer's use of port; the port stays reserved for peer for the
// reservation window.
func (l *Leases) Release(peer link.PeerID, port uint16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ls := l.by[port]; ls != nil && ls.Peer == peer {
		ls.active = false
		ls.Expires = time.Now().Add(l.cfg.Reservation)
		l.save(time.Now())
	}
}

// Holder returns the peer that holds or has reserved port.
func (l *Leases) Holder(port uint16) (link.PeerID, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(time.Now())
	ls := l.by[port]
	if ls == nil {
		return link.PeerID{}, false
	}
	return ls.Peer, true
}

// Free counts the ports that could be lent now.
func (l *Leases) Free() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(time.Now())
	return int(l.cfg.Hi) - int(l.cfg.Lo) + 1 - len(l.by)
}

// InUse lists the ports lent and in use now, in order.
func (l *Leases) InUse() []uint16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint16
	for port, ls := range l.by {
		if ls.active {
			out = append(out, port)
		}
	}
	slices.Sort(out)
	return out
}

func (l *Leases) expire(now time.Time) {
	for port, ls := range l.by {
		if !ls.active && now.After(ls.Expires) {
			delete(l.by, port)
		}
	}
}

type leaseFile struct {
	Leases []lease `json:"leases"`
}

// save writes the leases to File, if set. An active lease is written with
// a full reservation from now, so that a crash of the exit keeps it
// reserved. Errors are not fatal: the leases still work in memory.
func (l *Leases) save(now time.Time) {
	if l.cfg.File == "" {
		return
	}
	var f leaseFile
	for _, ls := range l.by {
		e := *ls
		if ls.active {
			e.Expires = now.Add(l.cfg.Reservation)
		}
		f.Leases = append(f.Leases, e)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return
	}
	tmp := l.cfg.File + ".tmp"
	if err := os.MkdirAll(filepath.Dir(l.cfg.File), 0o700); err != nil {
		return
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return
	}
	os.Rename(tmp, l.cfg.File)
}

func (l *Leases) load() error {
	b, err := os.ReadFile(l.cfg.File)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read forward leases: %w", err)
	}
	var f leaseFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("forward leases file %s is corrupt (%v): remove it to start afresh", l.cfg.File, err)
	}
	now := time.Now()
	for _, ls := range f.Leases {
		if ls.Port < l.cfg.Lo || ls.Port > l.cfg.Hi || now.After(ls.Expires) {
			continue
		}
		e := ls
		e.active = false
		l.by[ls.Port] = &e
	}
	return nil
}
