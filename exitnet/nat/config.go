package nat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Modes and methods.
const (
	ModeAuto     = "auto"   // NAT-PMP if the gateway answers it, else UPnP
	ModeUPnP     = "upnp"   // UPnP-IGD only
	ModeNATPMP   = "natpmp" // NAT-PMP only
	ModeOff      = "off"    // map nothing
	MethodUPnP   = "upnp"
	MethodNATPMP = "natpmp"
)

// Defaults for the zero values of Config.
const (
	DefaultLifetimeUPnP   = time.Hour     // a crashed exit leaves a mapping no longer than this
	DefaultLifetimeNATPMP = 2 * time.Hour // RFC 6886's recommendation
	DefaultTimeout        = 3 * time.Second
	DefaultCloseTimeout   = 5 * time.Second
	DefaultRetryMin       = time.Second
	DefaultRetryMax       = 5 * time.Minute

	minLifetime = 2 * time.Second
	maxLifetime = 7 * 24 * time.Hour // UPnP-IGD v2's longest lease
	minRenew    = time.Second        // a gateway granting 1 s leases is renewed every second, no faster
)

// Config configures a Mapper. The zero value maps with "auto".
type Config struct {
	// Mode is "auto" (the default), "upnp", "natpmp" or "off".
	Mode string
	// Gateway, when valid, is the router to speak to; otherwise the IPv4
	// default route's gateway (from /proc/net/route) is used. Either way
	// nothing but this address is spoken to.
	Gateway netip.Addr
	// Lifetime is the lease asked for; mappings are renewed at half the
	// lifetime granted. Zero means DefaultLifetimeUPnP or
	// DefaultLifetimeNATPMP. Between 2 s and 7 days.
	Lifetime time.Duration
	// Timeout bounds discovery, and each request to the gateway. Reading
	// the router's list of mappings, at start, takes at most twice it.
	Timeout time.Duration
	// CloseTimeout bounds deleting every mapping when the Mapper stops.
	CloseTimeout time.Duration
	// RetryMin and RetryMax bound the back-off between failed attempts
	// (it doubles from RetryMin up to RetryMax).
	RetryMin, RetryMax time.Duration
	// RecordPath, when set, is a file (in the caller's state dir) where
	// the Mapper writes down each mapping before it asks for it and drops
	// it once deleted. At start, Run deletes the mappings a run that did
	// not clean up left there (a crash, a kill) before it maps anything,
	// if the router still holds them for this host's address and port and
	// no program of this host holds that port now (by TCP or UDP); on an
	// IGDv2 router, also those it placed at an external port it chose,
	// found in its list under this package's description.
	// Without it a mapping left by a crash lasts until its lease ends, or
	// for ever where the router grants only leases without end.
	RecordPath string
	// Log receives what happens; nil discards.
	Log *slog.Logger
}

// normalize validates c and fills in defaults.
func (c Config) normalize() (Config, error) {
	c.Mode = strings.ToLower(strings.TrimSpace(c.Mode))
	switch c.Mode {
	case "":
		c.Mode = ModeAuto
	case ModeAuto, ModeUPnP, ModeNATPMP, ModeOff:
	default:
		return c, fmt.Errorf("nat mode %q: want auto, upnp, natpmp or off", c.Mode)
	}
	if c.Gateway.IsValid() {
		c.Gateway = c.Gateway.Unmap()
		if !usableGateway(c.Gateway) {
			return c, fmt.Errorf("nat gateway %v: want the router's IPv4 unicast address on this LAN", c.Gateway)
		}
	}
	if c.Lifetime != 0 && (c.Lifetime < minLifetime || c.Lifetime > maxLifetime) {
		return c, fmt.Errorf("nat lifetime %v: want between %v and %v", c.Lifetime, minLifetime, maxLifetime)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"timeout", &c.Timeout, DefaultTimeout},
		{"close timeout", &c.CloseTimeout, DefaultCloseTimeout},
		{"retry min", &c.RetryMin, DefaultRetryMin},
		{"retry max", &c.RetryMax, DefaultRetryMax},
	} {
		if *d.v < 0 {
			return c, fmt.Errorf("nat %s %v: must not be negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.RetryMin > c.RetryMax {
		return c, fmt.Errorf("nat retry min %v is above retry max %v", c.RetryMin, c.RetryMax)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c, nil
}

// lifetime is the lease to ask for with method.
func (c Config) lifetime(method string) time.Duration {
	switch {
	case c.Lifetime != 0:
		return c.Lifetime
	case method == MethodNATPMP:
		return DefaultLifetimeNATPMP
	default:
		return DefaultLifetimeUPnP
	}
}

// gateway is one way of mapping ports on one router.
type gateway interface {
	method() string
	address() netip.Addr
	externalAddr(ctx context.Context) (netip.Addr, error)
	// add maps internal, asking for external port want, and returns the
	// external port and lease granted (0: a lease without end).
	add(ctx context.Context, proto string, internal, want uint16, lifetime time.Duration) (uint16, time.Duration, error)
	remove(ctx context.Context, proto string, internal, external uint16) error
	// localAddr is this host's address towards the gateway: where its
	// mappings forward to.
	localAddr() netip.Addr
	// holds reports whether the router still holds r for r.Client and
	// r.Internal (and, where the router says, as ours), so that deleting
	// it touches no other host's mapping.
	holds(ctx context.Context, r recorded) (bool, error)
	// list returns the mappings the router holds to this host under this
	// package's description, where the router may have chosen their
	// external port (UPnP-IGD v2 AddAnyPortMapping); nil elsewhere. Each
	// request to the router takes at most each; a list cut short by ctx or
	// by its length is returned with errListCut.
	list(ctx context.Context, each time.Duration) ([]recorded, error)
}

// refusedError is a gateway that answered, with a refusal: it is still
// there, so it is not looked for again.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

func isRefused(err error) bool {
	var re *refusedError
	return errors.As(err, &re)
}

// dialMethod returns a way to speak method to the gateway gw from local,
// for deleting what an earlier run mapped with another method than the
// one found now.
func dialMethod(ctx context.Context, cfg Config, method string, gw, local netip.Addr) (gateway, error) {
	if method == MethodNATPMP {
		return &pmpGateway{gw: gw, local: local, timeout: cfg.Timeout}, nil
	}
	return discoverUPnP(ctx, gw, local)
}

// discover finds the gateway and the way to speak to it, by cfg.Mode.
func discover(ctx context.Context, cfg Config) (gateway, error) {
	gw := cfg.Gateway
	if !gw.IsValid() {
		var err error
		if gw, err = defaultGateway(); err != nil {
			return nil, err
		}
	}
	local, err := localAddrFor(gw)
	if err != nil {
		return nil, err
	}
	// pmp returns the gateway with a nil error if it answered the probe,
	// with a refusedError if it answered with a refusal (it speaks NAT-PMP
	// all the same), and no gateway if it did not answer.
	pmp := func() (gateway, error) {
		p := &pmpGateway{gw: gw, local: local, timeout: cfg.Timeout}
		if _, err := p.externalAddr(ctx); err != nil {
			if isRefused(err) {
				return p, err
			}
			return nil, err
		}
		return p, nil
	}
	upnp := func() (gateway, error) { return discoverUPnP(ctx, gw, local) }
	switch cfg.Mode {
	case ModeNATPMP:
		if g, err := pmp(); g == nil {
			return nil, err
		} else {
			return g, nil
		}
	case ModeUPnP:
		return upnp()
	}
	type result struct {
		g   gateway
		err error
	}
	pc, uc := make(chan result, 1), make(chan result, 1)
	go func() { g, err := pmp(); pc <- result{g, err} }()
	go func() { g, err := upnp(); uc <- result{g, err} }()
	p, u := <-pc, <-uc
	switch {
	case p.err == nil:
		return p.g, nil
	case u.err == nil:
		return u.g, nil
	case p.g != nil:
		return p.g, nil // it answers NAT-PMP, if only to refuse: the refusals are reported per mapping
	}
	return nil, fmt.Errorf("no NAT-PMP or UPnP gateway at %v: %w", gw, errors.Join(p.err, u.err))
}
