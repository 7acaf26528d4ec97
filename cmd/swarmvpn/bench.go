package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/bench"
)

// The bench flags have no SWARMVPN_* variables: SWARMVPN_SOCKS and
// SWARMVPN_EXIT belong to 'connect', and a benchmark should measure what
// its command line says.

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure swarmvpn, or any SOCKS5 proxy, against a direct path: throughput, latency, flow setup, idle flows, UDP",
		Description: `With no flags, bench starts an exit and a client of this binary on loopback, with
sink, echo and UDP echo targets, runs every workload in about a minute, and prints a table
(--json: one JSON document). --socks measures other SOCKS5 proxies instead (add --local to
keep swarmvpn in the run), --direct adds the direct baseline, --exit measures a remote exit
through a local client. Paths take turns round by round; each figure is the median of the
rounds, and beside each other path's figure the table says how the first path compares
with it ("2.00× worse": half the throughput, or twice the time).

Examples:
  swarmvpn bench --direct
  swarmvpn bench --local --socks ssh=127.0.0.1:1081 --direct
  swarmvpn bench --exit PEERID@203.0.113.7:7843 --target-host 198.51.100.4 --target-port 9000
  swarmvpn bench --rtt 50ms --workloads rtt --direct`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON document instead of the table"},
			&cli.StringFlag{Name: "html", Usage: "also write the report as one self-contained HTML page with charts to `FILE`"},
			&cli.BoolFlag{Name: "quick", Usage: "short rounds and small counts: seconds instead of a minute, rougher figures"},
			&cli.BoolFlag{Name: "direct", Usage: "also measure the direct path, no proxy: the baseline"},
			&cli.BoolFlag{Name: "local", Usage: "also measure swarmvpn on loopback (the default unless --socks or --exit is given)"},
			&cli.StringSliceFlag{Name: "socks",
				Usage: "measure the SOCKS5 proxy at `[NAME=][USER:PASS@]HOST:PORT` (another swarmvpn client, ssh -D, a provider's endpoint); repeatable"},
			&cli.StringFlag{Name: "exit",
				Usage: "measure the remote exit `PEERID@HOST:PORT` through a client started here; the exit must reach the targets (--target-host)"},
			&cli.StringFlag{Name: "target-host",
				Usage: "the `IP` of this machine that the exit (or proxy) reaches the targets at; they then listen on every interface (default 127.0.0.1, loopback only)"},
			&cli.IntFlag{Name: "target-port", DefaultText: "any free port",
				Usage: "the targets' `PORT`, TCP and UDP alike, for a firewall to open"},
			&cli.DurationFlag{Name: "rtt", DefaultText: "none",
				Usage: "add the long-link workload: one flow each way over a link with this round-trip `TIME` added, e.g. 50ms"},
			&cli.StringSliceFlag{Name: "rtt-socks",
				Usage: "`NAME=[USER:PASS@]HOST:PORT`: the --socks proxy NAME reached over a link with --rtt added (see 'swarmvpn bench delay'), for the long-link workload"},
			&cli.StringFlag{Name: "workloads", DefaultText: "all; rtt with --rtt",
				Usage: "run only the workloads in `LIST`, comma-separated: " + strings.Join(bench.AllWorkloads, ",")},
			&cli.IntFlag{Name: "rounds", DefaultText: "3; --quick: 2", Usage: "measured rounds behind each median"},
			&cli.IntFlag{Name: "warmup", Value: 1, Usage: "rounds run and discarded before the measured ones"},
			&cli.DurationFlag{Name: "duration", DefaultText: "1s, long-link 3s; --quick: 150ms, 300ms",
				Usage: "length of a bulk, UDP or long-link round"},
			&cli.StringFlag{Name: "bulk-flows", DefaultText: "1,8,64", Usage: "parallel flows of the bulk rounds, comma-separated `LIST`"},
			&cli.IntFlag{Name: "idle-flows", DefaultText: "10000; --quick: 500", Usage: "idle flows held open"},
			&cli.IntFlag{Name: "burst", DefaultText: "1000; --quick: 200", Usage: "flows opened at once in the burst"},
			&cli.StringFlag{Name: "cpuprofile", Hidden: true,
				Usage: "write CPU profiles of bench, the exit and the clients into `DIR` (go tool pprof)"},
		},
		Commands:        []*cli.Command{benchDelayCommand(), benchProfiledCommand()},
		HideHelpCommand: true,
		Action:          runBench,
	}
}

func runBench(ctx context.Context, cmd *cli.Command) error {
	if cmd.Args().Present() {
		return fmt.Errorf("unexpected argument %q: bench takes only flags (see 'swarmvpn bench --help')", cmd.Args().First())
	}
	cfg, err := benchConfig(cmd)
	if err != nil {
		return err
	}
	htmlFile := cmd.String("html")
	if htmlFile != "" {
		if fi, err := os.Stat(filepath.Dir(htmlFile)); err != nil || !fi.IsDir() {
			return fmt.Errorf("--html %s: no directory %s to write it in", htmlFile, filepath.Dir(htmlFile))
		}
	}
	// Check every proxy answers before anything starts.
	for _, p := range cfg.Paths {
		if p.Kind != bench.Proxy {
			continue
		}
		if err := bench.Probe(ctx, p.SOCKS); err != nil {
			return fmt.Errorf("--socks %s: %w", p.SOCKS.Addr, err)
		}
		if p.DelayedSOCKS != nil {
			if err := bench.Probe(ctx, *p.DelayedSOCKS); err != nil {
				return fmt.Errorf("--rtt-socks %s: %w", p.DelayedSOCKS.Addr, err)
			}
		}
	}
	if dir := cmd.String("cpuprofile"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		f, err := os.Create(filepath.Join(dir, "bench.pprof"))
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
		cfg.ChildArgs = func(role string, args []string) []string {
			return append([]string{"bench", "profiled", filepath.Join(dir, role+".pprof")}, args...)
		}
	}
	stderr := cmd.Root().ErrWriter
	if stderr == nil {
		stderr = os.Stderr
	}
	progress := bench.NewProgress(stderr, stderr == os.Stderr && isTerminal(os.Stderr))
	cfg.Progress = progress.Update
	b, err := bench.New(cfg)
	if err != nil {
		return err
	}
	rep, err := b.Run(ctx)
	progress.Done()
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted; everything bench started has been stopped")
		}
		return err
	}
	rep.Command = "swarmvpn " + strings.Join(os.Args[1:], " ")
	if htmlFile != "" {
		if err := writeHTMLReport(htmlFile, rep); err != nil {
			return err
		}
	}
	out := cmd.Root().Writer
	if cmd.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteTable(out)
}

// isTerminal reports whether f is a terminal (a character device), where a
// progress line can be rewritten in place.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// benchDelayCommand runs a LinkDelay on its own, to put a long link in
// front of another proxy's server: ssh -p PORT through it, say, then
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
// all.
func writeHTMLReport(path string, rep *bench.Report) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".bench-*.html")
	if err != nil {
		return fmt.Errorf("--html: %w", err)
	}
	defer os.Remove(f.Name())
	err = rep.WriteHTML(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		os.Chmod(f.Name(), 0o644)
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("--html %s: %w", path, err)
	}
	return nil
}
