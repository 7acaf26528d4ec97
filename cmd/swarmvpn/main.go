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
	app := &cli.Command{
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
			benchCommand(),
			versionCommand(),
		},
		HideHelpCommand: true,
		OnUsageError:    usageError,
		Action: func(_ context.Context, cmd *cli.Command) error {
			if cmd.Args().Present() {
				return fmt.Errorf("no command %q (see 'swarmvpn --help')", cmd.Args().First())
			}
			return cli.ShowRootCommandHelp(cmd)
		},
	}
	for _, c := range app.Commands {
		prepare(c)
	}
	return app
}

// usageError turns a usage error into one line that says where help is,
// instead of the whole help followed by the error.
func usageError(_ context.Context, cmd *cli.Command, err error, _ bool) error {
	return fmt.Errorf("%w (see '%s --help')", err, cmd.FullName())
}

// prepare gives c and its subcommands the root's usage errors, and has
// their path settings expanded (~, $HOME) once every source has been read.
func prepare(c *cli.Command) {
	c.OnUsageError = usageError
	before := c.Before
	c.Before = func(ctx context.Context, cmd *cli.Command) (context.Context, error) {
		if before != nil {
			var err error
			if ctx, err = before(ctx, cmd); err != nil {
				return ctx, err
			}
		}
		return ctx, expandPaths(ctx, cmd)
	}
	for _, sub := range c.Commands {
		prepare(sub)
	}
}
