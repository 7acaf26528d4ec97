package main

import (
	"context"
	"fmt"

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
			&cli.BoolFlag{Name: "announce-port-fix", Value: true, Sources: env("announce-port-fix"),
				Usage: "rewrite the port torrent clients announce to HTTP and UDP trackers into the forwarded port, and remove their ip= parameters that name your own addresses (--announce-port-fix=false to leave announces alone)"},
			stringFlag("qbittorrent", "", "keep qBittorrent's listen port equal to the forwarded port through its WebUI at `URL` (e.g. http://127.0.0.1:8080)"),
			qbittorrentFlags()[1],
			qbittorrentFlags()[2],
			uiFlags()[0],
			uiFlags()[1],
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
	cfg := client.Config{MDNS: cmd.Bool("mdns"), SOCKS: cmd.String("socks"), HTTP: cmd.String("http"),
		SOCKSUser: cmd.String("socks-user"), SOCKSPass: cmd.String("socks-pass"),
		Forward: cmd.String("forward"), ForwardPort: cmd.Uint16("forward-port"),
		PortFile: cmd.String("port-file"), OnPortHook: cmd.String("on-port"),
		NoAnnounceFix: !cmd.Bool("announce-port-fix"), Log: log}
	for _, s := range cmd.StringSlice("exit") {
		e, err := link.ParseExitAddr(s)
		if err != nil {
			return fmt.Errorf("--exit: %w", err)
		}
		cfg.Exits = append(cfg.Exits, e)
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
		g.Go(func() error { return serveMetrics(ctx, metricsLn, reg, log) })
	}
	return g.Wait()
}
