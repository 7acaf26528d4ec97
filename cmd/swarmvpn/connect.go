package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/urfave/cli/v3"
	"golang.org/x/sync/errgroup"

	"github.com/swarmvpn/swarmvpn/exitnet"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/proxy"
)

func connectCommand() *cli.Command {
	return &cli.Command{
		Name:  "connect",
		Usage: "serve a local SOCKS5 and HTTP proxy whose every flow leaves through an exit",
		Flags: append(commonFlags(),
			stringFlag("exit", "", "the exit to use, `PEERID@HOST:PORT` as printed by 'swarmvpn exit'"),
			stringFlag("socks", "127.0.0.1:1080", "serve SOCKS5 on `HOST:PORT`"),
			stringFlag("http", "127.0.0.1:8118", "serve the HTTP proxy on `HOST:PORT` (\"off\" to disable)"),
			stringFlag("socks-user", "", "require this SOCKS5 `USER` name (with --socks-pass)"),
			stringFlag("socks-pass", "", "require this SOCKS5 `PASSWORD` (with --socks-user)"),
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
	if cmd.String("exit") == "" {
		return errors.New("no exit given: pass --exit PEERID@HOST:PORT (the line 'swarmvpn exit' prints on the exit's machine)")
	}
	exit, err := link.ParseExitAddr(cmd.String("exit"))
	if err != nil {
		return fmt.Errorf("--exit: %w", err)
	}
	user, pass := cmd.String("socks-user"), cmd.String("socks-pass")
	if (user == "") != (pass == "") {
		return errors.New("--socks-user and --socks-pass go together: give both, or neither for no authentication")
	}
	id, err := identity(cmd, "client", log)
	if err != nil {
		return err
	}
	pool, err := exitnet.NewPool(exitnet.PoolConfig{Link: link.Config{Identity: id, Log: log}, Exit: exit, Log: log})
	if err != nil {
		return err
	}
	socks, err := proxy.NewSOCKS(proxy.SOCKSConfig{Dialer: pool, Associator: associator{pool}, Username: user, Password: pass, Log: log})
	if err != nil {
		return err
	}
	httpProxy, err := proxy.NewHTTP(proxy.HTTPConfig{Dialer: pool, Log: log})
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

	log.Info("client ready", "peer", id.ID().String(), "exit", exit.String(), "socks", socksLn.Addr().String(), "http", addrOf(httpLn))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pool.Run(ctx) })
	g.Go(func() error { return socks.Serve(ctx, socksLn) })
	if httpLn != nil {
		g.Go(func() error { return httpProxy.Serve(ctx, httpLn) })
	}
	err = g.Wait()
	log.Info("client stopped")
	return err
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return "off"
	}
	return ln.Addr().String()
}

// associator lets the SOCKS5 server open UDP associations through the pool.
type associator struct{ pool *exitnet.Pool }

func (a associator) Associate(ctx context.Context) (proxy.Association, error) {
	assoc, err := a.pool.Associate(ctx)
	if err != nil {
		return nil, err // never a non-nil interface holding a nil pointer
	}
	return assoc, nil
}
