package nat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

var (
	// ErrOff: the Mapper's mode is "off".
	ErrOff = errors.New("nat: port mapping is off")
	// ErrNoGateway: no gateway that maps ports has been found (yet); the
	// error wrapping it says why.
	ErrNoGateway = errors.New("nat: no gateway")
	// ErrClosed: the Mapper has stopped.
	ErrClosed = errors.New("nat: mapper closed")
)

// Status is a snapshot of a Mapper.
type Status struct {
	Mode    string
	Method  string     // "upnp" or "natpmp"; "" while no gateway is found
	Gateway netip.Addr // the router spoken to, once found
	// External is the router's public address: valid only when the
	// router reports one that is public.
	External netip.Addr
	// Reported is the external address the router reported, public or not.
	Reported netip.Addr
	// DoubleNAT: Reported is not a public address (see ErrDoubleNAT); Err
	// says what to do.
	DoubleNAT bool
	// Err is the last problem with the gateway itself (discovery, the
	// external address), in plain words; "" when there is none.
	Err      string
	Mappings []Mapping
}

// Mapping is the state of one port the caller asked to map.
type Mapping struct {
	Proto    string // "tcp" or "udp"
	Internal uint16
	// External is the port the router gave, 0 until it gave one. It is
	// kept while a renewal fails, and asked for again.
	External uint16
	// Active: the router holds the mapping (its lease has not run out).
	Active bool
	// Expires is when the lease runs out unless renewed; zero for a lease
	// without end, or when not mapped.
	Expires time.Time
	Err     string // the last error mapping it; "" after a success
}

// Mapper keeps ports mapped on the home router. Run owns every exchange
// with the router; Add, Remove, Status and ExternalAddr may be called from
// any goroutine.
type Mapper struct {
	cfg      Config
	log      *slog.Logger
	discover func(context.Context) (gateway, error)
	// dial speaks a given method to a gateway: for mappings an earlier run
	// made with another method than discover found.
	dial func(ctx context.Context, method string, gw, local netip.Addr) (gateway, error)
	// inUse reports whether a socket of this host holds a port now
	// (portInUse; tests replace it).
	inUse func(proto string, local netip.Addr, port uint16) bool

	reqs    chan request
	removed chan struct{} // nudges Run to apply removals
	changes chan struct{}
	closed  chan struct{}
	done    chan struct{} // closed when Run has returned

	mu        sync.Mutex
	removals  []removal // asked for, not yet applied by Run; never dropped
	status    Status
	extErr    error
	started   bool
	closeOnce sync.Once
}

type request struct {
	add      bool
	proto    string
	internal uint16
	reply    chan reply
}

// removal is a Remove that Run has still to apply; done is closed when it
// has.
type removal struct {
	proto    string
	internal uint16
	done     chan struct{}
}

type reply struct {
	external uint16
	err      error
}

// New validates cfg and returns a Mapper; nothing is sent before Run.
func New(cfg Config) (*Mapper, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	m := &Mapper{
		cfg:     cfg,
		log:     cfg.Log,
		reqs:    make(chan request),
		removed: make(chan struct{}, 1),
		changes: make(chan struct{}, 1),
		closed:  make(chan struct{}),
		done:    make(chan struct{}),
		status:  Status{Mode: cfg.Mode},
		extErr:  ErrNoGateway,
	}
	m.discover = func(ctx context.Context) (gateway, error) { return discover(ctx, m.cfg) }
	m.dial = func(ctx context.Context, method string, gw, local netip.Addr) (gateway, error) {
		return dialMethod(ctx, m.cfg, method, gw, local)
	}
	m.inUse = portInUse
	return m, nil
}

// Add asks for proto ("tcp" or "udp") port internal of this host to be
// mapped, with the same external port if the router allows, and returns
// the external port the router gave. Asking again for a port already asked
// for returns its current external port.
//
// Once Run has received the request, the port stays wanted until Remove,
// whatever Add returns: a port the router could not map now (ErrNoGateway,
// a refusal) is retried with back-off, and Changes signals when it is
// mapped. Add needs Run to be running; it waits for it until ctx ends.
func (m *Mapper) Add(ctx context.Context, proto string, internal uint16) (uint16, error) {
	proto, err := checkPort(proto, internal)
	if err != nil {
		return 0, err
	}
	if m.cfg.Mode == ModeOff {
		return 0, ErrOff
	}
	r, err := m.call(ctx, request{add: true, proto: proto, internal: internal})
	return r.external, err
}

// Remove stops mapping proto port internal and deletes the mapping on the
// router. A deletion that fails is retried in the background until it
// succeeds or the lease runs out, so Remove returns only ctx's error or
// ErrClosed; even then the removal is carried out. Removing a port never
// added is not an error.
func (m *Mapper) Remove(ctx context.Context, proto string, internal uint16) error {
	proto, err := checkPort(proto, internal)
	if err != nil {
		return err
	}
	if m.cfg.Mode == ModeOff {
		return nil
	}
	// Recorded first, then waited for: a removal whose ctx ends before Run
	// gets to it is still applied, so no mapping outlives its lease.
	r := removal{proto: proto, internal: internal, done: make(chan struct{})}
	m.mu.Lock()
	m.removals = append(m.removals, r)
	m.mu.Unlock()
	select {
	case m.removed <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return nil
	case <-m.closed:
		return ErrClosed
	case <-m.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func checkPort(proto string, internal uint16) (string, error) {
	p := strings.ToLower(proto)
	if p != "tcp" && p != "udp" {
		return "", fmt.Errorf("nat: protocol %q: want tcp or udp", proto)
	}
	if internal == 0 {
		return "", errors.New("nat: port 0 cannot be mapped")
	}
	return p, nil
}

func (m *Mapper) call(ctx context.Context, r request) (reply, error) {
	r.reply = make(chan reply, 1)
	select {
	case m.reqs <- r:
	case <-m.closed:
		return reply{}, ErrClosed
	case <-m.done:
		return reply{}, ErrClosed
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
	select {
	case rep := <-r.reply:
		return rep, rep.err
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// ExternalAddr returns the router's public address, or an error: wrapping
// ErrNoGateway while no gateway is known, ErrDoubleNAT (with what to do)
// when the router's external address is not public, or the router's own
// error. A non-public address is never returned.
func (m *Mapper) ExternalAddr() (netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg.Mode == ModeOff {
		return netip.Addr{}, ErrOff
	}
	return m.status.External, m.extErr
}

// Status returns a snapshot of the Mapper.
func (m *Mapper) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Mappings = slices.Clone(s.Mappings)
	return s
}

// Changes signals (without blocking, coalesced) that something a caller
// publishes changed: the method, gateway or external address, or a
// mapping's external port or activity. Read Status or ExternalAddr then.
func (m *Mapper) Changes() <-chan struct{} { return m.changes }

// Close stops Run, which deletes every mapping (within CloseTimeout), and
// waits for it to return. It is idempotent, and safe before Run.
func (m *Mapper) Close() error {
	m.closeOnce.Do(func() { close(m.closed) })
	m.mu.Lock()
	started := m.started
	m.mu.Unlock()
	if started {
		<-m.done
	}
	return nil
}
