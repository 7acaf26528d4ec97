package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sync/errgroup"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/ui"
)

func connectCommand() *cli.Command {
	return &cli.Command{
		Name:  "connect",
		Usage: "serve a local SOCKS5 and HTTP proxy whose every flow leaves through an exit",
		Flags: append(append(commonFlags(),
			&cli.StringSliceFlag{Name: "exit", Sources: env("exit"),
				Usage: "an exit to use, `PEERID@HOST:PORT` as printed by 'swarmvpn exit', or PEERID alone to find it on the DHT; repeatable; without it exits are found on the DHT, on the LAN and from other exits"},
			&cli.IntFlag{Name: "hops", Value: 1, Sources: env("hops"),
				Usage: "`N` peers each flow crosses: 1, straight to an exit; 2, through a relay (another exit) first, so that no single peer sees both your address and your destinations"},
			&cli.StringSliceFlag{Name: "relay", Sources: env("relay"),
				Usage: "with --hops 2, reach exits only through this relay, `PEERID@HOST:PORT`; repeatable (default: any known exit that relays, in another network than the exit)"},
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
			&cli.BoolFlag{Name: "announce-port-fix", Value: true, Sources: env("announce-port-fix"),
				Usage: "rewrite the port torrent clients announce to HTTP and UDP trackers into the forwarded port, and remove their ip= parameters that name your own addresses (--announce-port-fix=false to leave announces alone)"},
			stringFlag("qbittorrent", "", "keep qBittorrent's listen port equal to the forwarded port through its WebUI at `URL` (e.g. http://127.0.0.1:8080)"),
			qbittorrentFlags()[1],
			qbittorrentFlags()[2],
			&cli.BoolFlag{Name: "dht-direct", Value: true, Sources: env("dht-direct"),
				Usage: "with no link to an exit yet, query the DHT from this machine, which DHT nodes then see (--dht-direct=false: only through an exit)"},
			&cli.BoolFlag{Name: "allow-private-exits", Sources: env("allow-private-exits"),
				Usage: "accept exits and DHT nodes found on the DHT at loopback and private addresses (labs and tests)"},
			&cli.DurationFlag{Name: "dht-lookup-every", Value: 30 * time.Second, Sources: env("dht-lookup-every"),
				Usage: "look for exits on the DHT this often while fewer than three good ones are known"},
			stringFlag("trust", "", "use only the exits whose peer IDs `FILE` lists, one per line (# comments)"),
			uiFlags()[0],
			uiFlags()[1],
		), dhtFlags("client")...),
		Before: applyConfig,
		Action: runConnect,
	}
}

func runConnect(ctx context.Context, cmd *cli.Command) error {
	log, err := newLogger(cmd)
	if err != nil {
		return err
	}
	cfg := client.Config{MDNS: cmd.Bool("mdns"), SOCKS: cmd.String("socks"), HTTP: cmd.String("http"),
		SOCKSUser: cmd.String("socks-user"), SOCKSPass: cmd.String("socks-pass"),
		Forward: cmd.String("forward"), ForwardPort: cmd.Uint16("forward-port"),
		PortFile: cmd.String("port-file"), OnPortHook: cmd.String("on-port"), Hops: int(cmd.Int("hops")),
		NoAnnounceFix: !cmd.Bool("announce-port-fix"), Log: log}
	for _, s := range cmd.StringSlice("exit") {
		e, err := parseExit(s)
		if err != nil {
			return fmt.Errorf("--exit: %w", err)
		}
		cfg.Exits = append(cfg.Exits, e)
	}
	if cfg.DHT, err = clientDHT(cmd); err != nil {
		return err
	}
	if f := cmd.String("trust"); f != "" {
		if cfg.Trust, err = readTrust(f); err != nil {
			return err
		}
	}
	for _, s := range cmd.StringSlice("relay") {
		r, err := link.ParseExitAddr(s)
		if err != nil {
			return fmt.Errorf("--relay: %w", err)
		}
		cfg.Relays = append(cfg.Relays, r)
	}
	if cfg.StateDir, err = stateDir(cmd); err != nil {
		return err
	}
	if err := cfg.Check(); err != nil { // before a key is created
		return err
	}
	if err := checkUI(cmd); err != nil {
		return err
	}
	if cfg.Identity, err = identity(cmd, "client", log); err != nil {
		return err
	}
	if cmd.String("qbittorrent") != "" {
		if cfg.QBittorrent, err = qbittorrentClient(cmd, log); err != nil {
			return err
		}
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	metricsLn, err := listenMetrics(cmd, log)
	if err != nil {
		c.Close()
		return err
	}
	page, err := ui.New(ui.Config{Page: ui.ClientPage, Status: func() ui.Snapshot { return c.Report() },
		Changed: c.Changed, Password: cmd.String("ui-pass"), Log: log})
	if err != nil {
		c.Close()
		closeAll(metricsLn)
		return err
	}
	uiLn, err := listenUI(cmd, log)
	if err != nil {
		c.Close()
		closeAll(metricsLn)
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.Run(ctx) })
	if uiLn != nil {
		g.Go(func() error { return page.Serve(ctx, uiLn) })
	}
	if metricsLn != nil {
		reg := newRegistry(clientCollector(c))
		reg.MustRegister(dhtCollector(nil, func() *client.DHTStats { return c.Stats().DHT }))
		g.Go(func() error { return serveMetrics(ctx, metricsLn, reg, log) })
	}
	return g.Wait()
}
