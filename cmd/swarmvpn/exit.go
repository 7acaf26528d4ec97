package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sync/errgroup"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

func exitCommand() *cli.Command {
	return &cli.Command{
		Name:  "exit",
		Usage: "run an exit: carry other peers' flows to the internet, and print this exit's address",
		Flags: append(commonFlags(),
			stringFlag("listen", "0.0.0.0:7843", "accept links on `HOST:PORT`"),
			stringFlag("public-addr", "", "print `HOST` in the exit address instead of this machine's interface addresses (for an exit behind NAT)"),
			&cli.BoolFlag{Name: "allow-private", Sources: env("allow-private"),
				Usage: "also carry flows to loopback and private networks (for labs and tests; never on a shared exit)"},
			&cli.StringSliceFlag{Name: "rule", Sources: env("rule"),
				Usage: "policy `RULE` checked before the built-in refusals, e.g. \"allow 10.200.0.0/16\" or \"deny 0.0.0.0/0 6000-7000\"; repeatable"},
			&cli.StringSliceFlag{Name: "allow-client", Sources: env("allow-client"),
				Usage: "accept only clients with this peer `ID`; repeatable (default: any client)"},
			stringFlag("allow-clients-file", "", "accept only clients whose peer IDs are listed in `FILE`, one per line (# comments), "+
				"besides any --allow-client; re-read on SIGHUP, and clients no longer listed are disconnected"),
			stringFlag("rate-per-client", "0", "relay at most `BYTES` per second for one client, both directions and all its flows together "+
				"(e.g. 500k, 10M, 2MiB; at least 1k; 0: unlimited)"),
			stringFlag("max-buffer-per-client", "64MiB", "let one client's links make the exit buffer at most `BYTES` in stream receive windows beyond each stream's first 256 KiB"),
			&cli.DurationFlag{Name: "half-open-timeout", Value: 2 * time.Minute, Sources: env("half-open-timeout"),
				Usage: "close a TCP flow one side has half-closed when the other carries nothing for this long"},
			&cli.DurationFlag{Name: "dial-timeout", Value: 10 * time.Second, Sources: env("dial-timeout"),
				Usage: "bound name resolution plus connecting to a destination"},
			&cli.BoolFlag{Name: "mdns", Value: true, Sources: env("mdns"),
				Usage: "advertise this exit on the LAN by mDNS (--mdns=false to stay quiet)"},
			&cli.IntFlag{Name: "max-clients", Value: 1024, Sources: env("max-clients"),
				Usage: "serve at most this many clients at once"},
			&cli.IntFlag{Name: "max-flows-per-client", Value: 4096, Sources: env("max-flows-per-client"),
				Usage: "let one client have at most this many flows open at once"},
			&cli.IntFlag{Name: "max-udp-per-client", Value: 16, Sources: env("max-udp-per-client"),
				Usage: "let one client hold at most this many UDP associations"},
			&cli.DurationFlag{Name: "udp-idle", Value: 5 * time.Minute, Sources: env("udp-idle"),
				Usage: "close a UDP association that carried nothing for this long"},
			&cli.StringSliceFlag{Name: "known-exit", Sources: env("known-exit"),
				Usage: "another exit's `PEERID@HOST:PORT` whose signed descriptor this exit fetches and passes on to its clients; repeatable"},
			stringFlag("forward-ports", "", "lend clients ports of this `RANGE` (e.g. 40000-40999) so peers can reach them; empty: no port forwarding"),
			&cli.IntFlag{Name: "forward-per-client", Value: 1, Sources: env("forward-per-client"),
				Usage: "the most forwarded ports one client may hold"},
			&cli.DurationFlag{Name: "forward-reservation", Value: 24 * time.Hour, Sources: env("forward-reservation"),
				Usage: "keep a client's port for it this long after it leaves, so it gets the same port back"},
		),
		Before: applyConfig,
		Action: runExit,
	}
}

func runExit(ctx context.Context, cmd *cli.Command) error {
	log, err := newLogger(cmd)
	if err != nil {
		return err
	}
	for _, name := range []string{"max-clients", "max-flows-per-client", "max-udp-per-client", "forward-per-client"} {
		if n := cmd.Int(name); n < 1 {
			return fmt.Errorf("--%s %d: want at least 1", name, n)
		}
	}
	for _, name := range []string{"dial-timeout", "udp-idle", "half-open-timeout", "forward-reservation"} {
		if d := cmd.Duration(name); d <= 0 {
			return fmt.Errorf("--%s %v: want a duration above zero, such as 30s or 5m", name, d)
		}
	}
	pol := &policy.Policy{AllowPrivate: cmd.Bool("allow-private")}
	for _, s := range cmd.StringSlice("rule") {
		r, err := policy.ParseRule(s)
		if err != nil {
			return fmt.Errorf("--rule: %w", err)
		}
		pol.Rules = append(pol.Rules, r)
	}
	allowed := &allowList{static: map[link.PeerID]bool{}, file: cmd.String("allow-clients-file")}
	for _, s := range cmd.StringSlice("allow-client") {
		id, err := link.ParsePeerID(s)
		if err != nil {
			return fmt.Errorf("--allow-client: %w (print a client's ID with 'swarmvpn id --key FILE')", err)
		}
		allowed.static[id] = true
	}
	var allow func(link.PeerID) bool
	allowCount := 0
	if allowed.active() {
		if allow, allowCount, err = allowed.load(); err != nil {
			return err
		}
	}
	rateLimit, err := parseRate(cmd.String("rate-per-client"))
	if err != nil {
		return fmt.Errorf("--rate-per-client: %w: want bytes per second such as 500k, 10M or 2MiB, or 0 for no limit", err)
	}
	maxBuffer, err := parseBytes(cmd.String("max-buffer-per-client"))
	if err != nil || maxBuffer < 1<<20 {
		return fmt.Errorf("--max-buffer-per-client %q: want an amount of at least 1MiB, such as 64MiB", cmd.String("max-buffer-per-client"))
	}
	id, err := identity(cmd, "exit", log)
	if err != nil {
		return err
	}
	ports, err := forwardLeases(cmd)
	if err != nil {
		return err
	}
	cfg := exit.Config{
		Link:        link.Config{Identity: id, Log: log},
		Policy:      pol,
		Allow:       allow,
		DialTimeout: cmd.Duration("dial-timeout"),
		Ports:       ports,
		Version:     version,

		MaxClients:          int(cmd.Int("max-clients")),
		MaxStreamsPerClient: int(cmd.Int("max-flows-per-client")),
		MaxUDPPerClient:     int(cmd.Int("max-udp-per-client")),
		UDPIdleTimeout:      cmd.Duration("udp-idle"),
		RatePerClient:       rateLimit,
		MaxBufferPerClient:  maxBuffer,
		HalfOpenTimeout:     cmd.Duration("half-open-timeout"),
		Log:                 log,
	}
	var known []link.ExitAddr
	for _, s := range cmd.StringSlice("known-exit") {
		k, err := link.ParseExitAddr(s)
		if err != nil {
			return fmt.Errorf("--known-exit: %w", err)
		}
		known = append(known, k)
	}
	ln, err := listen(cmd.String("listen"), "--listen")
	if err != nil {
		return err
	}
	metricsLn, err := listenMetrics(cmd, log)
	if err != nil {
		ln.Close()
		return err
	}
	// From here on SIGHUP re-reads the allow-list instead of ending the
	// process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	addrs := exitAddrs(id.ID(), ln.Addr().(*net.TCPAddr), cmd.String("public-addr"))
	for _, a := range addrs {
		fmt.Fprintln(cmd.Root().Writer, a)
		cfg.Addrs = append(cfg.Addrs, a.Addr)
	}
	e, err := exit.New(cfg)
	if err != nil {
		closeAll(ln, metricsLn)
		return err
	}
	log.Info("exit ready", "peer", id.ID().String(), "listen", ln.Addr().String(),
		"allow_private", pol.AllowPrivate, "rules", len(pol.Rules), "allow_list", allow != nil,
		"allowed_clients", allowCount, "rate_per_client", rateLimit, "forward_ports", orNone(cmd.String("forward-ports")))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.Serve(ctx, ln) })
	g.Go(func() error {
		reloadOnHangup(ctx, hup, e, allowed, log)
		return nil
	})
	if metricsLn != nil {
		reg := newRegistry(exitCollector(e))
		g.Go(func() error { return serveMetrics(ctx, metricsLn, reg, log) })
	}
	if cmd.Bool("mdns") {
		g.Go(func() error {
			advertise(ctx, e, id, ln.Addr().(*net.TCPAddr), log)
			return nil
		})
	}
	if len(known) > 0 {
		g.Go(func() error {
			learnKnown(ctx, e, id, known, log)
			return nil
		})
	}
	err = g.Wait()
	log.Info("exit stopped")
	return err
}

// reloadOnHangup re-reads the allow-list each time the process gets
// SIGHUP, until ctx ends. A file that does not read keeps the old list.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, e *exit.Server, allowed *allowList, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if allowed.file == "" {
			log.Info("SIGHUP: no allow-clients-file to re-read")
			continue
		}
		allow, n, err := allowed.load()
		if err != nil {
			log.Error("allow-list not reloaded; the old one stays in force", "err", err)
			continue
		}
		dropped := e.SetAllow(allow)
		log.Info("allow-list reloaded", "allowed_clients", n, "disconnected", dropped)
	}
}

// advertise announces the exit on the LAN until ctx ends. Without
// multicast (a container, a VPS) that fails, which is worth a warning only.
func advertise(ctx context.Context, e *exit.Server, id *link.Identity, ln *net.TCPAddr, log *slog.Logger) {
	d, err := e.Descriptor()
	if err != nil {
		log.Warn("no descriptor to advertise", "err", err)
		return
	}
	desc, _ := d.Verify(id.ID(), time.Now())
	var ips []net.IP
	if !ln.IP.IsUnspecified() {
		ips = []net.IP{ln.IP}
	}
	if err := discovery.Advertise(ctx, id.ID(), ln.Port, ips, desc.Caps(), d.Digest()); err != nil {
		log.Warn("not advertising on the LAN (mDNS unavailable); clients can still use the exit address", "err", err)
	}
}

// learnKnown fetches the descriptors of the exits named by --known-exit,
// now and every half hour, so this exit can pass them on to its clients.
func learnKnown(ctx context.Context, e *exit.Server, id *link.Identity, known []link.ExitAddr, log *slog.Logger) {
	for {
		for _, k := range known {
			s, err := pool.FetchDescriptor(ctx, link.Config{Identity: id}, k)
			if err == nil {
				err = e.Learn(s)
			}
			if err != nil {
				log.Warn("cannot learn a known exit", "exit", k.ID.Short(), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Minute):
		}
	}
}

// forwardLeases returns the port lender --forward-ports asks for, with its
// leases kept in the state dir, or nil (as an interface) for none.
func forwardLeases(cmd *cli.Command) (exit.PortLender, error) {
	spec := cmd.String("forward-ports")
	if spec == "" {
		return nil, nil
	}
	r, err := policy.ParsePortRange(spec)
	if err != nil || r.Lo == 0 {
		return nil, fmt.Errorf("--forward-ports %q: want a range such as 40000-40999", spec)
	}
	if r.Lo < 1024 {
		return nil, fmt.Errorf("--forward-ports %q: ports below 1024 need privileges and clash with services; use a range above 1023", spec)
	}
	dir, err := stateDir(cmd)
	if err != nil {
		return nil, err
	}
	leases, err := portfwd.NewLeases(portfwd.LeasesConfig{Lo: r.Lo, Hi: r.Hi, PerClient: int(cmd.Int("forward-per-client")),
		Reservation: cmd.Duration("forward-reservation"), File: filepath.Join(dir, "forward-leases.json")})
	if err != nil {
		return nil, err
	}
	return leases, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// exitAddrs lists the addresses clients can use: the public host when one
// is given, the listen address when it is specific, and otherwise every
// interface address, global ones first.
func exitAddrs(id link.PeerID, ln *net.TCPAddr, public string) []link.ExitAddr {
	port := strconv.Itoa(ln.Port)
	mk := func(host string) link.ExitAddr { return link.ExitAddr{ID: id, Addr: net.JoinHostPort(host, port)} }
	if public != "" {
		return []link.ExitAddr{mk(public)}
	}
	if !ln.IP.IsUnspecified() {
		return []link.ExitAddr{mk(ln.IP.String())}
	}
	var global, local []link.ExitAddr
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr()
		switch {
		case ip.Is6() && ln.IP.To4() != nil: // an IPv4 listener
		case ip.IsLinkLocalUnicast(): // would need a zone
		case ip.IsLoopback():
			local = append(local, mk(ip.String()))
		default:
			global = append(global, mk(ip.String()))
		}
	}
	if len(global) > 0 {
		return global
	}
	if len(local) > 0 {
		return local
	}
	return []link.ExitAddr{mk("127.0.0.1")}
}
