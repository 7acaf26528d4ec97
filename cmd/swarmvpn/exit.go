package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/exitnet"
	"github.com/swarmvpn/swarmvpn/internal/link"
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
			&cli.DurationFlag{Name: "dial-timeout", Value: 0, Sources: env("dial-timeout"),
				Usage: "bound name resolution plus connecting to a destination (default 10s)"},
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
	policy := &exitnet.Policy{AllowPrivate: cmd.Bool("allow-private")}
	for _, s := range cmd.StringSlice("rule") {
		r, err := exitnet.ParseRule(s)
		if err != nil {
			return fmt.Errorf("--rule: %w", err)
		}
		policy.Rules = append(policy.Rules, r)
	}
	var allow func(link.PeerID) bool
	if ids := cmd.StringSlice("allow-client"); len(ids) > 0 {
		set := make(map[link.PeerID]bool, len(ids))
		for _, s := range ids {
			id, err := link.ParsePeerID(s)
			if err != nil {
				return fmt.Errorf("--allow-client: %w (print a client's ID with 'swarmvpn id --key FILE')", err)
			}
			set[id] = true
		}
		allow = func(id link.PeerID) bool { return set[id] }
	}
	id, err := identity(cmd, "exit", log)
	if err != nil {
		return err
	}
	e, err := exitnet.NewExit(exitnet.ExitConfig{
		Link:        link.Config{Identity: id, Log: log},
		Policy:      policy,
		Allow:       allow,
		DialTimeout: cmd.Duration("dial-timeout"),
		Log:         log,
	})
	if err != nil {
		return err
	}
	ln, err := listen(cmd.String("listen"), "--listen")
	if err != nil {
		return err
	}
	for _, a := range exitAddrs(id.ID(), ln.Addr().(*net.TCPAddr), cmd.String("public-addr")) {
		fmt.Fprintln(cmd.Root().Writer, a)
	}
	log.Info("exit ready", "peer", id.ID().String(), "listen", ln.Addr().String(),
		"allow_private", policy.AllowPrivate, "rules", len(policy.Rules), "allow_list", allow != nil)
	err = e.Serve(ctx, ln)
	log.Info("exit stopped")
	return err
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
