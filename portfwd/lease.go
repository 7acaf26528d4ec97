package portfwd

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// ErrPortUnavailable means no port of the range could be lent to a client.
// Every refusal from Acquire wraps it and carries, as a *wire.Error, the
// status that says why: wire.StatusForwardCap, wire.StatusPortsExhausted or
// wire.StatusForwardRateLimit.
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
	// A reservation is a courtesy: when no port is free, the idle
	// reservation that matters least is lent to the new client instead.
	// Default 24h.
	Reservation time.Duration
	// NewPerSourceHour caps the leases that clients from one source
	// network (an IPv4 /24, an IPv6 /56) may create in any hour: a
	// client taking back its own reservation creates none. Peer IDs cost
	// nothing; addresses do. Default 16.
	NewPerSourceHour int
	// File, when set, keeps the leases across restarts of the exit.
	File string
}

// Leases lends ports of a range to clients: each client keeps its port
// for the reservation window after it goes away unless a new client needs
// it, two clients never share one, each holds at most PerClient, and one
// source network creates at most NewPerSourceHour leases an hour.
type Leases struct {
	cfg     LeasesConfig
	mu      sync.Mutex
	by      map[uint16]*lease
	created map[netip.Prefix][]time.Time // creations in the last hour, oldest first
	yielded uint64
	file    leaseWriter // writes File off the lock
}

type lease struct {
	Peer    link.PeerID `json:"peer"`
	Port    uint16      `json:"port"`
	Expires time.Time   `json:"expires"` // for a lease not in use
	// Idle is when the lease last stopped being used.
	Idle time.Time `json:"idle_since,omitzero"`
	// Carried counts the bytes the client relayed through the exit while
	// it held the port, over all its uses.
	Carried uint64 `json:"carried,omitempty"`
	active  bool
}

// maxSources bounds the source networks whose creations are remembered;
// past it, the ones with no creation in the last hour are forgotten.
const maxSources = 4096

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
	if cfg.NewPerSourceHour <= 0 {
		cfg.NewPerSourceHour = 16
	}
	l := &Leases{cfg: cfg, by: make(map[uint16]*lease), created: make(map[netip.Prefix][]time.Time),
		file: leaseWriter{path: cfg.File}}
	if cfg.File != "" {
		if err := l.load(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Range returns the ports Leases lends, inclusive.
func (l *Leases) Range() (lo, hi uint16) { return l.cfg.Lo, l.cfg.Hi }

// SourceNetwork is the network a source address's creations are counted
// under: its /24 for IPv4, its /56 for IPv6. The zero Addr gives the zero
// Prefix.
func SourceNetwork(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	switch {
	case a.Is4():
		return netip.PrefixFrom(a, 24).Masked()
	case a.Is6():
		return netip.PrefixFrom(a, 56).Masked()
	}
	return netip.Prefix{}
}

// Acquire lends peer, whose link comes from the address from, a port and
// calls try with it; try binds the port and returns an error when it cannot
// (another program holds it), and Acquire then tries another. A port the
// peer still has reserved comes first, then want, then random free ports of
// the range, then, when none is free, ports reserved for other clients that
// are not using them: first those of clients that carried the least
// traffic, and among equals the longest idle. A zero from is not bounded by
// NewPerSourceHour.
func (l *Leases) Acquire(peer link.PeerID, from netip.Addr, want uint16, try func(port uint16) error) (uint16, error) {
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
		return 0, refuse(wire.StatusForwardCap,
			fmt.Errorf("%w: client already holds %d forwarded port(s), the most this exit allows", ErrPortUnavailable, active))
	}
	var lastErr error
	take := func(port uint16, ls *lease) bool {
		if err := try(port); err != nil {
			lastErr = err
			return false
		}
		ls.active = true
		l.by[port] = ls
		l.save(now)
		return true
	}
	// The client's own reservations: no new lease is created.
	slices.Sort(mine)
	for _, port := range mine {
		if take(port, l.by[port]) {
			return port, nil
		}
	}

	src := SourceNetwork(from)
	if src.IsValid() && l.recent(src, now) >= l.cfg.NewPerSourceHour {
		return 0, refuse(wire.StatusForwardRateLimit,
			fmt.Errorf("%w: clients from %s created %d forwarded ports in the last hour, the most this exit allows",
				ErrPortUnavailable, src, l.cfg.NewPerSourceHour))
	}
	created := func(port uint16) uint16 {
		if src.IsValid() {
			l.created[src] = append(l.created[src], now)
		}
		return port
	}
	fresh := func(port uint16) bool {
		return l.by[port] == nil && take(port, &lease{Peer: peer, Port: port})
	}
	if want != 0 && want >= l.cfg.Lo && want <= l.cfg.Hi && fresh(want) {
		return created(want), nil
	}
	// Random probing finds a free port quickly in a sparse range and does
	// not hand out ports in an order an observer could predict; a full scan
	// from a random start settles a dense one.
	span := int(l.cfg.Hi) - int(l.cfg.Lo) + 1
	start := rand.N(span)
	for i := range span {
		if port := l.cfg.Lo + uint16((start+i)%span); fresh(port) {
			return created(port), nil
		}
	}
	// No port is free: an idle reservation yields.
	for _, ls := range l.idleByWorth() {
		if take(ls.Port, &lease{Peer: peer, Port: ls.Port}) {
			l.yielded++
			return created(ls.Port), nil
		}
	}
	if lastErr != nil {
		return 0, refuse(wire.StatusPortsExhausted, fmt.Errorf("%w: %v", ErrPortUnavailable, lastErr))
	}
	return 0, refuse(wire.StatusPortsExhausted,
		fmt.Errorf("%w: every port of %d-%d is in use", ErrPortUnavailable, l.cfg.Lo, l.cfg.Hi))
}

func refuse(s wire.Status, err error) error { return &wire.Error{Status: s, Err: err} }

// idleByWorth returns the leases not in use, those that matter least
// first: by the order of magnitude of the traffic their client carried
// (under 1 MiB, under 2, under 4 ...), then the longest idle.
func (l *Leases) idleByWorth() []*lease {
	var idle []*lease
	for _, ls := range l.by {
		if !ls.active {
			idle = append(idle, ls)
		}
	}
	slices.SortFunc(idle, func(a, b *lease) int {
		return cmp.Or(cmp.Compare(bits.Len64(a.Carried>>20), bits.Len64(b.Carried>>20)),
			a.Idle.Compare(b.Idle), cmp.Compare(a.Port, b.Port))
	})
	return idle
}

// recent counts src's creations in the hour before now, forgetting older
// ones.
func (l *Leases) recent(src netip.Prefix, now time.Time) int {
	if len(l.created) > maxSources {
		for p, ts := range l.created {
			if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= time.Hour {
				delete(l.created, p)
			}
		}
	}
	ts := l.created[src]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= time.Hour {
		i++
	}
	if i == len(ts) {
		delete(l.created, src)
		return 0
	}
	l.created[src] = ts[i:]
	return len(ts) - i
}

// Release ends peer's use of port; the port stays reserved for peer for the
// reservation window, or until a new client needs it. carried is what the
// client relayed through the exit (bytes, both directions) while it held
// the port: the reservations of clients that carried little yield first.
func (l *Leases) Release(peer link.PeerID, port uint16, carried uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ls := l.by[port]; ls != nil && ls.Peer == peer {
		now := time.Now()
		ls.active = false
		ls.Idle = now
		ls.Expires = now.Add(l.cfg.Reservation)
		ls.Carried += carried
		l.save(now)
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

// Free counts the ports that could be lent to a new client now: those not
// in use, since a reservation yields to a new client.
func (l *Leases) Free() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(time.Now())
	n := int(l.cfg.Hi) - int(l.cfg.Lo) + 1
	for _, ls := range l.by {
		if ls.active {
			n--
		}
	}
	return n
}

// Yielded counts the reservations lent to another client because no port
// was free.
func (l *Leases) Yielded() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.yielded
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

// save hands a snapshot of the leases to the writer, which writes it to
// File, if set, after l.mu is released. An active lease is written with a
// full reservation from now, idle since now, so that a crash of the exit
// keeps it reserved. l.mu must be held.
func (l *Leases) save(now time.Time) {
	if l.cfg.File == "" {
		return
	}
	f := &leaseFile{Leases: make([]lease, 0, len(l.by))}
	for _, ls := range l.by {
		e := *ls
		if ls.active {
			e.Expires, e.Idle = now.Add(l.cfg.Reservation), now
		}
		f.Leases = append(f.Leases, e)
	}
	l.file.put(f)
}

// Close returns once every change made before it is in File. The leases
// stay usable (and later changes are written too); nothing is released.
// It may be called more than once.
func (l *Leases) Close() error {
	l.file.flush()
	return nil
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
		if e.Idle.IsZero() { // written by an older version
			e.Idle = e.Expires.Add(-l.cfg.Reservation)
		}
		if e.Idle.After(now) { // the clock went back
			e.Idle = now
		}
		l.by[ls.Port] = &e
	}
	return nil
}
