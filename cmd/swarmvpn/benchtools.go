package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/pprof"
	"time"

	"github.com/swarmvpn/swarmvpn/bench"
	"github.com/urfave/cli/v3"
)

// measure that proxy with --rtt-socks.
func benchDelayCommand() *cli.Command {
	return &cli.Command{
		Name:  "delay",
		Usage: "relay TCP connections to another address with a round-trip time added, to measure a proxy over a long link",
		Description: `Prints the address it listens on, then relays until interrupted. To measure ssh -D over a
50 ms link: run 'swarmvpn bench delay --to SSHD_HOST:22 --rtt 50ms', start
'ssh -N -D 127.0.0.1:1082 -p RELAY_PORT 127.0.0.1', and pass
'--socks ssh=127.0.0.1:1081 --rtt-socks ssh=127.0.0.1:1082 --rtt 50ms' to bench.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "accept connections on `HOST:PORT`"},
			&cli.StringFlag{Name: "to", Usage: "relay each connection to `HOST:PORT`"},
			&cli.DurationFlag{Name: "rtt", Usage: "round-trip `TIME` to add, half each way, e.g. 50ms"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			to, rtt := cmd.String("to"), cmd.Duration("rtt")
			if _, _, err := net.SplitHostPort(to); err != nil || to == "" {
				return fmt.Errorf("--to %q: want the HOST:PORT to relay to, e.g. 127.0.0.1:22", to)
			}
			if rtt <= 0 || rtt > 10*time.Second {
				return errors.New("--rtt: want the round-trip time to add, more than 0 and at most 10s, e.g. 50ms")
			}
			ln, err := listen(cmd.String("listen"), "--listen")
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.Root().Writer, ln.Addr().String())
			return (&bench.LinkDelay{Upstream: to, RTT: rtt}).Serve(ctx, ln)
		},
	}
}

// benchProfiledCommand runs another swarmvpn command with the CPU profiler
// on: bench starts its exit and clients through it for --cpuprofile.
func benchProfiledCommand() *cli.Command {
	return &cli.Command{
		Name:            "profiled",
		Hidden:          true,
		Usage:           "run 'swarmvpn ARGS...' writing a CPU profile to FILE: profiled FILE ARGS...",
		SkipFlagParsing: true,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			args := cmd.Args().Slice()
			if len(args) < 2 {
				return errors.New("profiled: want FILE COMMAND [ARGS...]")
			}
			f, err := os.Create(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
			return newApp().Run(ctx, append([]string{"swarmvpn"}, args[1:]...))
		},
	}
}

// writeHTMLReport writes the report's HTML page to path, whole or not at
