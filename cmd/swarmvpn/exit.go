package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sync/errgroup"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery/mainline"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/internal/control"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

func exitCommand() *cli.Command {
	return &cli.Command{
		Name:  "exit",
		Usage: "run an exit: carry other peers' flows to the internet, and print this exit's address",
		Flags: append(append(commonFlags(),
			stringFlag("listen", "", "accept links on `HOST:PORT` (default: 0.0.0.0:443 when this process may bind it — root or "+
				"CAP_NET_BIND_SERVICE —, else 0.0.0.0:7843)"),
			stringFlag("fallback", "", "show visitors who are not clients (browsers, probers) the web site at `URL`, e.g. http://127.0.0.1:8080 "+
				"(default: a small built-in page)"),
			stringFlag("tls-cert", "", "present the certificate chain in `FILE` (PEM), for an exit with its own domain; needs --tls-key "+
				"(default: a self-signed certificate)"),
			stringFlag("tls-key", "", "the private key of --tls-cert, in `FILE` (PEM)"),
			stringFlag("public-addr", "", "print `HOST` in the exit address instead of this machine's interface addresses (for an exit behind NAT)"),
			stringFlag("nat", "auto", "open the link port and every lent port on the home router: `MODE` auto (NAT-PMP or UPnP-IGD, "+
				"whichever the router speaks), upnp, natpmp or off; the exit then publishes the router's public address and ports"),
			&cli.BoolFlag{Name: "allow-private", Sources: env("allow-private"),
				Usage: "also carry flows to loopback and private networks (for labs and tests; never on a shared exit)"},
			&cli.StringSliceFlag{Name: "rule", Sources: env("rule"),
				Usage: "policy `RULE` checked before the built-in refusals, e.g. \"allow 10.200.0.0/16\" or \"deny 0.0.0.0/0 6000-7000\"; repeatable"},
			&cli.StringSliceFlag{Name: "allow-client", Sources: env("allow-client"),
				Usage: "accept only clients with this peer `ID`, as 'swarmvpn id --for-exit THIS-EXIT-ID' prints it on the client's machine; repeatable (default: any client)"},
			&cli.BoolFlag{Name: "relay", Value: true, Sources: env("relay"),
				Usage: "relay clients' encrypted links to other verified exits, for two-hop paths (--relay=false to refuse)"},
			stringFlag("relay-rate", "0", "relay at most `BYTES` per second for all clients together, both directions (e.g. 10M; 0: unlimited)"),
			&cli.IntFlag{Name: "relay-max-flows", Value: 256, Sources: env("relay-max-flows"),
				Usage: "relay at most `N` links at once, for all clients"},
			&cli.IntFlag{Name: "relay-max-flows-per-client", Value: 8, Sources: env("relay-max-flows-per-client"),
				Usage: "relay at most `N` links at once for one client"},
			stringFlag("allow-clients-file", "", "accept only clients whose peer IDs are listed in `FILE`, one per line (# comments), "+
				"besides any --allow-client; re-read on SIGHUP, and clients no longer listed are disconnected"),
			stringFlag("rate-per-client", "0", "relay at most `BYTES` per second for one client, both directions and all its flows together "+
				"(e.g. 500k, 10M, 2MiB; at least 1k; 0: unlimited)"),
			stringFlag("max-buffer-per-client", "64MiB", "let one client's links make the exit buffer at most `BYTES` in stream receive windows beyond each stream's first 256 KiB and as much again in its moving flows' read buffers"),
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
				Usage: "keep a client's port for it this long after it leaves, so it gets the same port back (unless a new client needs it when no port is free)"},
			&cli.IntFlag{Name: "forward-new-per-hour", Value: 16, Sources: env("forward-new-per-hour"),
				Usage: "let clients from one network (IPv4 /24, IPv6 /56) create at most this many port leases an hour"},
			&cli.IntFlag{Name: "max-inbound-per-client", Value: 512, Sources: env("max-inbound-per-client"),
				Usage: "carry at most this many connections from a client's forwarded port to it at once; more are reset"},
			&cli.IntFlag{Name: "inbound-rate-per-addr", Value: 8, Sources: env("inbound-rate-per-addr"),
				Usage: "let one remote address (IPv6: /64) open at most this many connections a second to forwarded ports (bursts of four seconds' worth); more are reset"},
			&cli.IntFlag{Name: "max-handshakes", Value: 256, Sources: env("max-handshakes"),
				Usage: "hold at most this many unfinished TLS handshakes; past it the oldest is closed"},
			&cli.IntFlag{Name: "max-handshakes-per-source", Value: 16, Sources: env("max-handshakes-per-source"),
				Usage: "hold at most this many unfinished TLS handshakes from one address (IPv6: /64); past it its oldest is closed"},
			uiFlags()[0],
			uiFlags()[1],
		), dhtFlags("exit")...),
		Before: applyConfig,
		Action: runExit,
	}
}

func runExit(ctx context.Context, cmd *cli.Command) error {
	log, err := newLogger(cmd)
	if err != nil {
		return err
	}
	if err := checkUI(cmd); err != nil {
		return err
	}
	lock, err := lockExitState(cmd, false)
	if err != nil {
		return err
	}
	defer lock.Release()
	cfg, allowed, err := exitConfig(cmd, log)
	if err != nil {
		return err
	}
	ln, err := listen(listenAddr(cmd.String("listen")), "--listen")
	if err != nil {
		return err
	}
	metricsLn, err := listenMetrics(cmd, log)
	if err != nil {
		ln.Close()
		return err
	}
	uiLn, err := listenUI(cmd, log)
	if err != nil {
		closeAll(ln, metricsLn)
		return err
	}
	ctlLn, err := listenExitControl(cmd)
	if err != nil {
		// The exit's work is carrying links; 'swarmvpn status' is a help.
		log.Warn("no control socket: 'swarmvpn status --exit' cannot ask this exit", "err", err)
	}
	lnAddr := ln.Addr().(*net.TCPAddr)
	mapper, err := portMapper(cmd, lnAddr, log)
	if err == nil && mapper != nil && lock == nil {
		// The mapper keeps its record in the state dir.
		if lock, err = lockExitState(cmd, true); err == nil {
			defer lock.Release()
		}
	}
	if err != nil {
		closeAll(ln, metricsLn, uiLn, ctlLn)
		return err
	}
	if mapper != nil {
		cfg.NAT = mapper
	}
	// From here on SIGHUP re-reads the allow-list instead of ending the
	// process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// A lab exit (--allow-private) must not carry its clients to its own
	// page or metrics.
	for _, l := range []net.Listener{metricsLn, uiLn} {
		if l != nil {
			if a, ok := l.Addr().(*net.TCPAddr); ok {
				cfg.Listeners = append(cfg.Listeners, a.AddrPort())
			}
		}
	}
	id := cfg.Link.Identity
	for _, a := range exit.Addrs(id.ID(), lnAddr, cmd.String("public-addr")) {
		cfg.Addrs = append(cfg.Addrs, a.Addr)
	}
	e, err := exit.New(cfg)
	if err != nil {
		closeAll(ln, metricsLn, uiLn, ctlLn)
		return err
	}
	page, err := exitPage(cmd, e, cfg, mapper, log)
	if err != nil {
		closeAll(ln, metricsLn, uiLn, ctlLn)
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	if mapper != nil {
		g.Go(func() error { return mapper.Run(ctx) })
		e.MapLink(ctx, uint16(lnAddr.Port)) // so that the address printed is the one the internet reaches
	}
	for _, a := range e.Addrs() {
		fmt.Fprintln(cmd.Root().Writer, link.ExitAddr{ID: id.ID(), Addr: a})
	}
	log.Info("exit ready", "peer", id.ID().String(), "listen", ln.Addr().String(),
		"allow_private", cfg.Policy.AllowPrivate, "rules", len(cfg.Policy.Rules), "allow_list", cfg.Allow != nil,
		"allowed_clients", allowed.count, "rate_per_client", cfg.RatePerClient, "forward_ports", orNone(cmd.String("forward-ports")),
		"nat", natMode(mapper))
	g.Go(func() error { return e.Serve(ctx, ln) })
	g.Go(func() error {
		reloadOnHangup(ctx, hup, e, allowed, log)
		return nil
	})
	if ctlLn != nil {
		g.Go(func() error {
			return control.Serve(ctx, ctlLn, func() exitStatus { return newExitStatus(e, mapper) })
		})
	}
	if metricsLn != nil {
		reg := newRegistry(exitCollector(e))
		reg.MustRegister(dhtCollector(func() (mainline.Stats, bool) { s, ok := e.DHT(); return s.Stats, ok }, nil))
		g.Go(func() error { return serveMetrics(ctx, metricsLn, reg, log) })
	}
	if uiLn != nil {
		g.Go(func() error { return page.Serve(ctx, uiLn) })
	}
	err = g.Wait()
	if l, ok := cfg.Ports.(*portfwd.Leases); ok && l != nil {
		l.Close() // the leases' last changes are in their file
	}
	log.Info("exit stopped")
	return err
}

// listenAddr is --listen, or its default: the HTTPS port when this process
// may bind it, since a link on 443 looks like any HTTPS site's traffic and
// passes firewalls that allow only web ports; else 7843.
func listenAddr(flag string) string {
	switch {
	case flag != "":
		return flag
	case mayBindHTTPS():
		return "0.0.0.0:443"
	default:
		return "0.0.0.0:7843"
	}
}

// reloadOnHangup re-reads the allow-list each time the process gets
