package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sync/errgroup"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/portfwd"
	"github.com/swarmvpn/swarmvpn/proxy"
)

func connectCommand() *cli.Command {
	return &cli.Command{
		Name:  "connect",
		Usage: "serve a local SOCKS5 and HTTP proxy whose every flow leaves through an exit",
		Flags: append(commonFlags(),
			&cli.StringSliceFlag{Name: "exit", Sources: env("exit"),
				Usage: "an exit to use, `PEERID@HOST:PORT` as printed by 'swarmvpn exit'; repeatable; without it exits are found on the LAN and from other exits"},
			&cli.BoolFlag{Name: "mdns", Value: true, Sources: env("mdns"),
				Usage: "look for exits on the LAN by mDNS (--mdns=false to use only --exit and exits learned before)"},
			stringFlag("socks", "127.0.0.1:1080", "serve SOCKS5 on `HOST:PORT`"),
			stringFlag("http", "127.0.0.1:8118", "serve the HTTP proxy on `HOST:PORT` (\"off\" to disable)"),
			stringFlag("socks-user", "", "require this SOCKS5 `USER` name (with --socks-pass)"),
			stringFlag("socks-pass", "", "require this SOCKS5 `PASSWORD` (with --socks-user)"),
			stringFlag("forward", "auto", "ask the exit for a forwarded port and carry peers' connections to `HOST:PORT`; "+
				"\"auto\": 127.0.0.1 on the forwarded port's own number (the port the torrent client is told to listen on); \"off\": no forward"),
			&cli.Uint16Flag{Name: "forward-port", Sources: env("forward-port"),
				Usage: "ask the exit for this `PORT` (it lends another when that one is taken)"},
			stringFlag("port-file", "", "write the forwarded port to `FILE` each time it is obtained"),
			stringFlag("on-port", "", "run `COMMAND` (with sh -c) each time the forwarded port is obtained; {{PORT}} becomes the port"),
			stringFlag("qbittorrent", "", "keep qBittorrent's listen port equal to the forwarded port through its WebUI at `URL` (e.g. http://127.0.0.1:8080)"),
			qbittorrentFlags()[1],
			qbittorrentFlags()[2],
		),
		Before: applyConfig,
		Action: runConnect,
	}
}

func runConnect(ctx context.Context, cmd *cli.Command) error {
	log, err := newLogger(cmd)
	if err != nil {
		return err
	}
	var exits []link.ExitAddr
	for _, s := range cmd.StringSlice("exit") {
		e, err := link.ParseExitAddr(s)
		if err != nil {
			return fmt.Errorf("--exit: %w", err)
		}
		exits = append(exits, e)
	}
	dir, err := stateDir(cmd)
	if err != nil {
		return err
	}
	cache := &discovery.Cache{Path: filepath.Join(dir, "exits.json"), Log: log}
	cached := cache.Load()
	if len(exits) == 0 && len(cached) == 0 && !cmd.Bool("mdns") {
		return errors.New("no exit given: pass --exit PEERID@HOST:PORT (the line 'swarmvpn exit' prints on the exit's machine), or leave mDNS on to find exits on the LAN")
	}
	user, pass := cmd.String("socks-user"), cmd.String("socks-pass")
	if (user == "") != (pass == "") {
		return errors.New("--socks-user and --socks-pass go together: give both, or neither for no authentication")
	}
	if err := checkExposure(cmd.String("socks"), cmd.String("http"), user != ""); err != nil {
		return err
	}
	id, err := identity(cmd, "client", log)
	if err != nil {
		return err
	}
	announcer := &portfwd.Announcer{PortFile: cmd.String("port-file"), Hook: cmd.String("on-port"), Log: log}
	var qb *portfwd.QBittorrent
	if cmd.String("qbittorrent") != "" {
		if qb, err = qbittorrentClient(cmd, log); err != nil {
			return err
		}
	}
	ports := make(chan uint16, 1)
	pc := pool.Config{Link: link.Config{Identity: id, Log: log}, Exits: exits, Log: log,
		Require: requireP2P, OnLearn: cache.Add}
	var pl *pool.Pool
	if fwd := cmd.String("forward"); fwd != "off" {
		target, err := forwardTarget(fwd, func() uint16 { return pl.Status().ForwardedPort })
		if err != nil {
			return err
		}
		pc.Forward, pc.ForwardPort = true, cmd.Uint16("forward-port")
		if fwd != "auto" || pc.ForwardPort != 0 {
			// The user asked for forwarding in so many words: an exit that
			// lends no port is no use. With "auto" it is only preferred.
			pc.Require = func(d discovery.Descriptor) error {
				if err := requireP2P(d); err != nil {
					return err
				}
				if !d.Forward || d.FreePorts == 0 {
					return errors.New("lends no forwarded port, and --forward asks for one")
				}
				return nil
			}
		}
		pc.Inbound = target
		pc.OnPort = func(port uint16) { latest(ports, port) }
	}
	pl, err = pool.New(pc)
	if err != nil {
		return err
	}
	for _, k := range cached {
		pl.AddExit(link.ExitAddr{ID: k.Desc.ID, Addr: k.Desc.Addrs[0]}, discovery.SourceCache)
	}
	socks, err := proxy.NewSOCKS(proxy.SOCKSConfig{Dialer: pl, Associator: associator{pl}, Username: user, Password: pass, Log: log})
	if err != nil {
		return err
	}
	httpProxy, err := proxy.NewHTTP(proxy.HTTPConfig{Dialer: pl, Log: log})
	if err != nil {
		return err
	}

	// Open every listener before starting anything, so a port in use stops
	// the whole command with nothing half-started.
	socksLn, err := listen(cmd.String("socks"), "--socks")
	if err != nil {
		return err
	}
	var httpLn net.Listener
	if addr := cmd.String("http"); addr != "off" && addr != "" {
		if httpLn, err = listen(addr, "--http"); err != nil {
			closeAll(socksLn)
			return err
		}
	}
	metricsLn, err := listenMetrics(cmd, log)
	if err != nil {
		closeAll(socksLn, httpLn)
		return err
	}
	running := client{pool: pl, socks: socks}
	if httpLn != nil {
		running.http = httpProxy
	}

	// The control socket answers 'swarmvpn status' and 'swarmvpn peers'.
	// Without it the client still works, so failing to open it is a warning.
	ctl, err := listenControl(filepath.Join(dir, controlSocketName))
	if err != nil {
		log.Warn("no control socket: 'swarmvpn status' will not reach this client", "err", err)
	}
	report := func() statusReport {
		return clientReport(running, id.ID().String(), socksLn.Addr().String(), addrOf(httpLn))
	}

	log.Info("client ready", "peer", id.ID().String(), "exits", len(exits), "learned", len(cached),
		"mdns", cmd.Bool("mdns"), "socks", socksLn.Addr().String(), "http", addrOf(httpLn))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pl.Run(ctx) })
	if cmd.Bool("mdns") {
		g.Go(func() error {
			warned := false
			discovery.Browse(ctx, 0, func(f discovery.Found) { pl.AddExit(f.Exit, discovery.SourceMDNS) }, func(err error) {
				if !warned && !errors.Is(err, discovery.ErrBadAnswer) {
					warned = true
					log.Warn("cannot look for exits on the LAN (mDNS unavailable)", "err", err)
				}
			})
			return nil
		})
	}
	g.Go(func() error {
		for {
			select {
			case port := <-ports:
				announcer.Announce(ctx, port)
				if qb != nil {
					if err := qb.SetPort(ctx, port); err != nil {
						log.Warn("cannot set qBittorrent's listen port; will retry", "port", port, "err", err)
					}
				}
			case <-ctx.Done():
				return nil
			}
		}
	})
	g.Go(func() error { return socks.Serve(ctx, socksLn) })
	if httpLn != nil {
		g.Go(func() error { return httpProxy.Serve(ctx, httpLn) })
	}
	if ctl != nil {
		g.Go(func() error { return serveControlOn(ctx, ctl, report) })
	}
	if metricsLn != nil {
		reg := newRegistry(clientCollector(running))
		g.Go(func() error { return serveMetrics(ctx, metricsLn, reg, log) })
	}
	if qb != nil {
		// Puts the port back after qBittorrent restarts or someone changes it.
		g.Go(func() error { qb.Keep(ctx, announcer.Port, 30*time.Second); return nil })
	}
	err = g.Wait()
	log.Info("client stopped")
	return err
}

// checkExposure refuses local proxies that other machines could reach and
// use without a password: anyone on the LAN (or the internet) could then
// send traffic out through the user's exit, under the user's peer ID. SOCKS5
// may listen beyond loopback with a username and password; the HTTP proxy
// has no authentication, so it listens on loopback only.
func checkExposure(socks, http string, socksAuth bool) error {
	if !socksAuth && !isLoopback(socks) {
		return fmt.Errorf("--socks %s would let anyone who reaches this address use your exit: "+
			"listen on a loopback address (127.0.0.1:1080), or set --socks-user and --socks-pass", socks)
	}
	if http != "off" && http != "" && !isLoopback(http) {
		return fmt.Errorf("--http %s would let anyone who reaches this address use your exit, and the HTTP proxy has no password: "+
			"listen on a loopback address (127.0.0.1:8118) and reach it from other machines through SSH (ssh -L 8118:127.0.0.1:8118 HOST), or use --http off", http)
	}
	return nil
}

// isLoopback reports whether a listen address is on loopback only: a
// loopback IP or "localhost". An empty host means every interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true // listen reports the malformed address
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return "off"
	}
	return ln.Addr().String()
}

// associator lets the SOCKS5 server open UDP associations through the pool.
type associator struct{ pl *pool.Pool }

func (a associator) Associate(ctx context.Context) (proxy.Association, error) {
	assoc, err := a.pl.Associate(ctx)
	if err != nil {
		return nil, err // never a non-nil interface holding a nil pointer
	}
	return assoc, nil
}

// forwardTarget returns the dialer for inbound connections: to the fixed
// address --forward names, or with "auto" to 127.0.0.1 on the port the
// connection arrived at, which is the number the torrent client listens on.
func forwardTarget(spec string, forwarded func() uint16) (func(context.Context, netip.AddrPort) (net.Conn, error), error) {
	if spec == "auto" || spec == "" {
		return func(ctx context.Context, remote netip.AddrPort) (net.Conn, error) {
			addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), forwarded())
			return portfwd.Target{Addr: addr.String()}.Dial(ctx, remote)
		}, nil
	}
	if _, err := netip.ParseAddrPort(spec); err != nil {
		return nil, fmt.Errorf("--forward %q: want HOST:PORT with an IP address, \"auto\" or \"off\"", spec)
	}
	return portfwd.Target{Addr: spec}.Dial, nil
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

// requireP2P refuses exits that do not carry BitTorrent: what a torrent
// client needs above all, and what other networks' exits drop silently.
func requireP2P(d discovery.Descriptor) error {
	if !d.P2P || !d.TCP || !d.UDP {
		return fmt.Errorf("does not carry BitTorrent (tcp %v, udp %v, p2p %v; policy: %s)", d.TCP, d.UDP, d.P2P, d.Policy)
	}
	return nil
}

// clientReport is what the control socket tells about the running client.
func clientReport(c client, peer, socks, http string) statusReport {
	pl := c.pool
	st := pl.Status()
	r := statusReport{Peer: peer, Link: string(st.State), Since: st.Since, LastError: st.LastError,
		SOCKS: socks, HTTP: http, ForwardedPort: st.ForwardedPort}
	r.Traffic = c.traffic(time.Now())
	if st.Exit.Addr != "" {
		r.Exit = st.Exit.String()
	}
	if st.RTT > 0 {
		r.RTT = st.RTT.Round(time.Microsecond).String()
	}
	if st.ForwardedPort != 0 {
		host, _, _ := net.SplitHostPort(st.Exit.Addr)
		r.PublicEndpoint = net.JoinHostPort(host, strconv.Itoa(int(st.ForwardedPort)))
	}
	for _, e := range pl.Exits() {
		er := exitReport{Exit: e.Exit.String(), Source: string(e.Source), Role: string(e.Role), Caps: e.Caps, Load: e.Load,
			Age: e.Age.String(), LastError: e.LastErr}
		if e.RTT > 0 {
			er.RTT = e.RTT.Round(time.Microsecond).String()
		}
		r.Exits = append(r.Exits, er)
	}
	return r
}

// traffic reads what the client has carried.
func (c client) traffic(now time.Time) *trafficReport {
	p, u := c.pool.Stats(), c.socks.UDPStats()
	in, out := c.flowBytes()
	return &trafficReport{At: now, FlowsOpen: p.FlowsOpen, Flows: p.Flows.Connect + p.Flows.UDP + p.Flows.Inbound,
		BytesIn: in + u.BytesIn, BytesOut: out + u.BytesOut}
}
