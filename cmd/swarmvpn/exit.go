package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sync/errgroup"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
)

func exitCommand() *cli.Command {
	return &cli.Command{
		Name:  "exit",
		Usage: "run an exit: carry other peers' flows to the internet, and print this exit's address",
		Flags: append(append(commonFlags(),
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
	cfg, allowed, err := exitConfig(cmd, log)
	if err != nil {
		return err
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
	id := cfg.Link.Identity
	addrs := exit.Addrs(id.ID(), ln.Addr().(*net.TCPAddr), cmd.String("public-addr"))
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
		"allow_private", cfg.Policy.AllowPrivate, "rules", len(cfg.Policy.Rules), "allow_list", cfg.Allow != nil,
		"allowed_clients", allowed.count, "rate_per_client", cfg.RatePerClient, "forward_ports", orNone(cmd.String("forward-ports")))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.Serve(ctx, ln) })
	g.Go(func() error {
		reloadOnHangup(ctx, hup, e, allowed, log)
		return nil
	})
	if metricsLn != nil {
		reg := newRegistry(exitCollector(e))
		reg.MustRegister(dhtCollector(e.DHT, nil))
		g.Go(func() error { return serveMetrics(ctx, metricsLn, reg, log) })
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
