package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/listener"
	"github.com/swarmvpn/swarmvpn/internal/lockfile"
	"github.com/swarmvpn/swarmvpn/portfwd"
	"github.com/swarmvpn/swarmvpn/portfwd/announce"
	"github.com/swarmvpn/swarmvpn/proxy"
)

// keepEvery is how often qBittorrent's listen port is checked and put back.
const keepEvery = 30 * time.Second

// Client is a swarmvpn client: New has opened its listeners, Run serves
// them.
type Client struct {
	cfg       Config
	log       *slog.Logger
	pool      *pool.Pool
	socks     *proxy.SOCKS
	http      *proxy.HTTP // nil when off
	announcer *portfwd.Announcer
	ports     chan uint16      // the newest forwarded port, for the announcements
	learned   int              // exits loaded from the cache
	cache     *discovery.Cache // nil without a state dir
	dht       *finder          // nil when the DHT is off
	events    *events          // recent events, from the pool's status changes
	doctor    doctor           // the newest check of qBittorrent's settings

	// announceOpt rewrites tracker announces; nil when off.
	announceOpt *announce.Options
	announces   announce.Counters
	own         ownAddrs
	fixedTarget netip.AddrPort // --forward IP:PORT; invalid for auto
	reach       reach
	probePorts  chan uint16 // new ports, for checkPort
	tcpPorts    chan uint16 // new ports, for keepTCP

	socksLn net.Listener
	httpLn  net.Listener      // nil when off
	ctl     *net.UnixListener // nil without a control socket
	lock    *lockfile.Lock    // the state dir's; nil without one

	claimed atomic.Bool // by Run or Close: whichever comes first owns the listeners
}

// New validates cfg, builds the client and opens its listeners: SOCKS5,
// HTTP and the control socket. A bad value or a port in use is one error,
// and nothing is left open. Nothing runs until Run.
func New(cfg Config) (*Client, error) {
	cfg.SOCKS = cmp.Or(cfg.SOCKS, DefaultSOCKS)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	log := cfg.Log
	if cfg.Identity == nil {
		return nil, errors.New("client: no identity configured")
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cache := cfg.cache()
	var cached []discovery.Known
	if cache != nil {
		cached = cache.Load()
	}
	c := &Client{cfg: cfg, log: log, learned: len(cached), cache: cache, ports: make(chan uint16, 1),
		probePorts: make(chan uint16, 1), tcpPorts: make(chan uint16, 1),
		announcer: &portfwd.Announcer{PortFile: cfg.PortFile, Hook: cfg.OnPortHook, Log: log},
		events:    newEvents(!cfg.forwardOff())}
	var exits []link.ExitAddr
	var wanted []link.PeerID // named by peer ID alone: found on the DHT
	for _, e := range cfg.Exits {
		if e.Addr == "" {
			wanted = append(wanted, e.ID)
		} else {
			exits = append(exits, e)
		}
	}
	pc := pool.Config{Link: link.Config{Identity: cfg.Identity, Log: log}, Exits: exits, Log: log,
		Require: requireP2P, DialWait: cfg.Tuning.DialWait, Hops: cfg.Hops, Relays: cfg.Relays,
		MinBackoff: cfg.Tuning.MinBackoff, MaxBackoff: cfg.Tuning.MaxBackoff, OnStatus: c.events.observe}
	if cache != nil {
		pc.OnLearn = cache.Add
	}
	if !cfg.forwardOff() {
		target, err := forwardTarget(cfg.Forward, func() uint16 { return c.pool.Status().ForwardedPort })
		if err != nil {
			return nil, err
		}
		pc.Forward, pc.ForwardPort = true, cfg.ForwardPort
		if (cfg.Forward != "auto" && cfg.Forward != "") || pc.ForwardPort != 0 {
			// The user asked for forwarding in so many words: an exit that
			// lends no port is no use. With "auto" it is only preferred.
			pc.Require = requireForward
		}
		if ap, err := netip.ParseAddrPort(cfg.Forward); err == nil {
			c.fixedTarget = ap
		}
		pc.Inbound = func(ctx context.Context, remote netip.AddrPort) (net.Conn, error) {
			conn, err := target(ctx, remote)
			if errors.Is(err, syscall.ECONNREFUSED) {
				// The target takes no TCP: the exit is to refuse it.
				if port := c.pool.Status().ForwardedPort; port != 0 {
					c.setInboundTCP(false, c.target(port))
				}
			}
			return conn, err
		}
		pc.OnPort = func(port uint16) { latest(c.ports, port) }
		if !cfg.NoAnnounceFix {
			c.announceOpt = &announce.Options{Port: func() uint16 { return c.pool.Status().ForwardedPort },
				Own: c.own.own, Count: &c.announces}
		}
	}
	var trusted func(link.PeerID) bool
	pc.Require, trusted = trustOnly(cfg.Trust, pc.Require)
	var err error
	if c.pool, err = pool.New(pc); err != nil {
		return nil, err
	}
	if cfg.DHT != nil {
		if c.dht, err = newFinder(*cfg.DHT, c.pool, cfg, cache, wanted, trusted); err != nil {
			return nil, err
		}
	}
	for _, k := range cached {
		c.pool.AddExit(link.ExitAddr{ID: k.Desc.ID, Addr: k.Desc.Addrs[0]}, discovery.SourceCache)
	}
	var dialer proxy.Dialer = c.pool
	if c.announceOpt != nil {
		dialer = announceDialer{pl: c.pool, opt: c.announceOpt}
	}
	if !cfg.httpOff() {
		if c.http, err = proxy.NewHTTP(proxy.HTTPConfig{Dialer: dialer, Log: log}); err != nil {
			return nil, err
		}
	}
	if c.lock, err = lockStateDir(cfg.StateDir); err != nil {
		return nil, err
	}
	if err := c.listen(); err != nil {
		c.unlock()
		return nil, err
	}
	// The SOCKS5 server names the HTTP proxy's address (known once it
	// listens) to an HTTP client that knocks on the wrong port.
	c.socks, err = proxy.NewSOCKS(proxy.SOCKSConfig{Dialer: dialer, Associator: associator{c},
		Username: cfg.SOCKSUser, Password: cfg.SOCKSPass, HTTPAddr: c.httpAddrForHint(), Log: log})
	if err != nil {
		c.closeListeners()
		c.unlock()
		return nil, err
	}
	return c, nil
}

// httpAddrForHint is the HTTP proxy's address, "" when it is off.
func (c *Client) httpAddrForHint() string {
	if c.httpLn == nil {
		return ""
	}
	return c.httpLn.Addr().String()
}

// lockStateDir holds the state dir's client lock, so that a second client
// on the same state dir (the same identity, control socket and cache)
// stops at once instead of running beside the first.
func lockStateDir(dir string) (*lockfile.Lock, error) {
	if dir == "" {
		return nil, nil
	}
	l, err := lockfile.Acquire(filepath.Join(dir, LockName))
	if held, ok := errors.AsType[*lockfile.HeldError](err); ok {
		who := "another 'swarmvpn connect'"
		if held.PID != 0 {
			who += fmt.Sprintf(" (pid %d)", held.PID)
		}
		return nil, fmt.Errorf("the state dir %s is in use by %s: stop that client, or give this one its own --state-dir", dir, who)
	}
	return l, err
}

// LockName is the client's lock file in the state dir, held while it runs.
const LockName = "client.lock"

func (c *Client) unlock() {
	if c.lock != nil {
		c.lock.Release()
	}
}

func (c *Client) closeListeners() {
	listener.CloseAll(c.socksLn, c.httpLn)
	if c.ctl != nil {
		c.ctl.Close()
	}
}

// listen opens every listener, or none: a port in use stops the whole
// client with nothing half-started.
func (c *Client) listen() error {
	var err error
	if c.socksLn, err = listener.Open(c.cfg.SOCKS, "--socks"); err != nil {
		return err
	}
	if c.http != nil {
		if c.httpLn, err = listener.Open(c.cfg.HTTP, "--http"); err != nil {
			c.socksLn.Close()
			return err
		}
	}
	if c.cfg.StateDir == "" {
		return nil
	}
	// The control socket answers 'swarmvpn status' and 'swarmvpn peers'.
	// Without it the client still works, so failing to open it is a warning.
	if c.ctl, err = ListenControl(filepath.Join(c.cfg.StateDir, ControlSocketName)); err != nil {
		c.log.Warn("no control socket: 'swarmvpn status' will not reach this client", "err", err)
		c.ctl = nil
	}
	return nil
}

// Run runs the client until ctx ends or a part of it fails, and returns
// after every goroutine it started has ended. It closes the listeners. Run
// may be called once.
func (c *Client) Run(ctx context.Context) error {
	if !c.claimed.CompareAndSwap(false, true) {
		return errors.New("client: Run called after Run or Close")
	}
	c.log.Info("client ready", "peer", c.cfg.Identity.ID().String(), "exits", len(c.cfg.Exits), "learned", c.learned,
		"mdns", c.cfg.MDNS, "dht", c.dht != nil, "socks", c.socksLn.Addr().String(), "http", addrOf(c.httpLn))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.pool.Run(ctx) })
	if c.cfg.MDNS {
		g.Go(func() error { c.browse(ctx); return nil })
	}
	if c.dht != nil {
		g.Go(func() error { c.dht.run(ctx); return nil })
	}
	g.Go(func() error { c.announce(ctx); return nil })
	if !c.cfg.forwardOff() {
		g.Go(func() error { c.checkPort(ctx, c.probePorts); return nil })
		g.Go(func() error { c.keepTCP(ctx, c.tcpPorts); return nil })
	}
	g.Go(func() error { return c.socks.Serve(ctx, c.socksLn) })
	if c.httpLn != nil {
		g.Go(func() error { return c.http.Serve(ctx, c.httpLn) })
	}
	if c.ctl != nil {
		g.Go(func() error {
			return ServeControlWith(ctx, c.ctl, c.Report, func(ctx context.Context) { c.CheckPort(ctx) })
		})
	}
	if qb := c.cfg.QBittorrent; qb != nil {
		// Puts the port back after qBittorrent restarts or someone changes it.
		g.Go(func() error { qb.Keep(ctx, c.announcer.Port, keepEvery); return nil })
		// Finds the settings 'swarmvpn doctor' would, for the status page.
		g.Go(func() error { c.checkQBittorrent(ctx, keepEvery); return nil })
	}
	err := g.Wait()
	if c.cache != nil {
		c.cache.Close() // writes the exits learned last
	}
	c.unlock()
	c.log.Info("client stopped")
	return err
}

// Close closes the listeners of a client whose Run was never called. It may
// be called more than once; once Run has been called it does nothing (end
// Run by ending its context).
func (c *Client) Close() error {
	if c.claimed.CompareAndSwap(false, true) {
		c.closeListeners()
		c.unlock()
	}
	return nil
}

// browse adds the exits mDNS finds on the LAN until ctx ends.
func (c *Client) browse(ctx context.Context) {
	warned := false
	discovery.Browse(ctx, 0, func(f discovery.Found) { c.pool.AddExit(f.Exit, discovery.SourceMDNS) }, func(err error) {
		if !warned && !errors.Is(err, discovery.ErrBadAnswer) {
			warned = true
			c.log.Warn("cannot look for exits on the LAN (mDNS unavailable)", "err", err)
		}
	})
}

// announce tells the port file, the hook, qBittorrent and OnPort of each
// forwarded port until ctx ends.
func (c *Client) announce(ctx context.Context) {
	for {
		select {
		case port := <-c.ports:
			latest(c.tcpPorts, port)
			latest(c.probePorts, port)
			c.announcer.Announce(ctx, port)
			if qb := c.cfg.QBittorrent; qb != nil {
				if err := qb.SetPort(ctx, port); err != nil {
					c.log.Warn("cannot set qBittorrent's listen port; will retry", "port", port, "err", err)
				} else if err := qb.Reannounce(ctx); err != nil {
					c.log.Warn("cannot ask qBittorrent to announce the new port to its trackers", "port", port, "err", err)
				} else {
					c.log.Info("asked qBittorrent to announce the forwarded port to its trackers", "port", port)
				}
			}
			if c.cfg.OnPort != nil {
				c.cfg.OnPort(port)
			}
		case <-ctx.Done():
			return
		}
	}
}

// latest replaces what ch holds with v: a reader that falls behind sees
// only the newest value.
func latest(ch chan uint16, v uint16) {
	for {
		select {
		case ch <- v:
			return
		default:
			select {
			case <-ch:
			default:
			}
		}
	}
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return "off"
	}
	return ln.Addr().String()
}

// Pool returns the client's pool of links, for tests that watch or steer it.
func (c *Client) Pool() *pool.Pool { return c.pool }

// Changed returns a channel closed at the client's next event (a link up
// or down, a failover, a new forwarded port, a refusal), for pages that
// show the report live.
func (c *Client) Changed() <-chan struct{} { return c.events.changed() }

// SOCKSAddr and HTTPAddr are the addresses the proxies listen on; HTTPAddr
// is "off" without an HTTP proxy.
func (c *Client) SOCKSAddr() string { return c.socksLn.Addr().String() }
func (c *Client) HTTPAddr() string  { return addrOf(c.httpLn) }

// target is where the forwarded port leads locally: the --forward address,
// or with "auto" 127.0.0.1 on the port's own number.
func (c *Client) target(port uint16) netip.AddrPort {
	if c.fixedTarget.IsValid() {
		return c.fixedTarget
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)
}
