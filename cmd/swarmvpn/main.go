// Command swarmvpn is a decentralized VPN for BitTorrent users: a local
// SOCKS5 and HTTP proxy whose every flow leaves through an exit peer.
//
// This package only turns flags, config files and the environment into the
// other packages' Config structs (client.Config for connect) and starts
// them; it also prints what 'status' and 'peers' fetch from a running
// client.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v3"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().Run(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "swarmvpn:", err)
		os.Exit(1)
	}
}

func newApp() *cli.Command {
	return &cli.Command{
		Name:    "swarmvpn",
		Usage:   "a decentralized VPN for BitTorrent: local SOCKS5/HTTP proxy, flows leave through an exit peer",
		Version: version,
		Commands: []*cli.Command{
			keygenCommand(),
			idCommand(),
			exitCommand(),
			connectCommand(),
			statusCommand(),
			doctorCommand(),
			peersCommand(),
			dhtCommand(),
			benchCommand(),
		},
		HideHelpCommand: true,
		OnUsageError: func(_ context.Context, cmd *cli.Command, err error, _ bool) error {
			return fmt.Errorf("%w (see 'swarmvpn %s --help')", err, cmd.Name)
		},
	}
}
