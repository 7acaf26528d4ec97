package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/urfave/cli/v3"
	"golang.org/x/sync/errgroup"

	"github.com/swarmvpn/swarmvpn/exitnet"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/portfwd"
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
			stringFlag("forward", "auto", "ask the exit for a forwarded port and carry peers' connections to `HOST:PORT`; "+
				"\"auto\": 127.0.0.1 on the forwarded port's own number (the port the torrent client is told to listen on); \"off\": no forward"),
			&cli.Uint16Flag{Name: "forward-port", Sources: env("forward-port"),
				Usage: "ask the exit for this `PORT` (it lends another when that one is taken)"},
			stringFlag("port-file", "", "write the forwarded port to `FILE` each time it is obtained"),
			stringFlag("on-port", "", "run `COMMAND` (with sh -c) each time the forwarded port is obtained; {{PORT}} becomes the port"),
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
	announcer := &portfwd.Announcer{PortFile: cmd.String("port-file"), Hook: cmd.String("on-port"), Log: log}
	ports := make(chan uint16, 1)
	pc := exitnet.PoolConfig{Link: link.Config{Identity: id, Log: log}, Exits: []link.ExitAddr{exit}, Log: log}
	var pool *exitnet.Pool
	if fwd := cmd.String("forward"); fwd != "off" {
		target, err := forwardTarget(fwd, func() uint16 { return pool.Status().ForwardedPort })
		if err != nil {
			return err
		}
		pc.Forward, pc.ForwardPort = true, cmd.Uint16("forward-port")
		pc.Inbound = target
		pc.OnPort = func(port uint16) { latest(ports, port) }
	}
	pool, err = exitnet.NewPool(pc)
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
	g.Go(func() error {
		for {
			select {
			case port := <-ports:
				announcer.Announce(ctx, port)
			case <-ctx.Done():
				return nil
			}
		}
	})
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
