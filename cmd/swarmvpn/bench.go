package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

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
with it ("2.00× worse": half the throughput, or twice the time). The uTP torrent workload
(--workloads utp) is not in the default set: it takes a few minutes, and it needs
/usr/bin/python3 with libtorrent (apt-get install python3-libtorrent).

Examples:
  swarmvpn bench --direct
  swarmvpn bench --hops 2 --workloads bulk,latency,udp --bulk-flows 1
  swarmvpn bench --local --socks ssh=127.0.0.1:1081 --direct
  swarmvpn bench --exit PEERID@203.0.113.7:7843 --target-host 198.51.100.4 --target-port 9000
  swarmvpn bench --rtt 50ms --workloads rtt --direct
  swarmvpn bench --workloads capacity
  swarmvpn bench --local --direct --workloads utp --rounds 3

The bulk and UDP workloads also report the CPU seconds per GiB carried of the client and of
the exit (of a --socks proxy: the process listening on its address, e.g. ssh, and the one at
the other end of its link, e.g. sshd), from /proc on Linux.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON document instead of the table"},
			&cli.StringFlag{Name: "html", Usage: "also write the report as one self-contained HTML page with charts to `FILE`"},
			&cli.BoolFlag{Name: "quick", Usage: "short rounds and small counts: seconds instead of a minute, rougher figures"},
			&cli.BoolFlag{Name: "direct", Usage: "also measure the direct path, no proxy: the baseline"},
			&cli.BoolFlag{Name: "local", Usage: "also measure swarmvpn on loopback (the default unless --socks or --exit is given)"},
			&cli.IntFlag{Name: "hops", Value: 1,
				Usage: "`N` = 2 also measures swarmvpn on loopback through a relay (an exit, a relay and a client of their own), beside the one-hop path"},
			&cli.StringSliceFlag{Name: "socks",
				Usage: "measure the SOCKS5 proxy at `[NAME=][USER:PASS@]HOST:PORT` (another swarmvpn client, ssh -D, a provider's endpoint); repeatable"},
			&cli.StringFlag{Name: "exit",
				Usage: "measure the remote exit `PEERID@HOST:PORT` through a client started here; the exit must reach the targets (--target-host)"},
			&cli.StringFlag{Name: "target-host",
				Usage: "the `IP` of this machine that the exit (or proxy) reaches the targets at; they then listen on every interface (default 127.0.0.1, loopback only)"},
			&cli.IntFlag{Name: "target-port", DefaultText: "any free port",
				Usage: "the targets' `PORT`, TCP and UDP alike, for a firewall to open"},
			&cli.DurationFlag{Name: "rtt", DefaultText: "none",
				Usage: "add the long-link workload: one flow each way, and request/response, over a link with this round-trip `TIME` added, e.g. 50ms" +
					" (with --hops 2, each hop is such a link: client → relay and relay → exit, so two hops' round trip is about twice one hop's)"},
			&cli.StringSliceFlag{Name: "rtt-socks",
				Usage: "`NAME=[USER:PASS@]HOST:PORT`: the --socks proxy NAME reached over a link with --rtt added (see 'swarmvpn bench delay'), for the long-link workload"},
			&cli.StringFlag{Name: "workloads", DefaultText: "all but capacity and utp; rtt with --rtt",
				Usage: "run only the workloads in `LIST`, comma-separated: " + strings.Join(bench.AllWorkloads, ",") +
					" (capacity, only when named: --capacity-clients client processes of their own × --capacity-flows flows each, " +
					"all moving data at once through the one exit bench starts, 5 s rounds; about two minutes;" +
					" utp, only when named: a few minutes; moves a torrent between libtorrent sessions over uTP only, and needs /usr/bin/python3 with libtorrent (apt-get install python3-libtorrent))"},
			&cli.IntFlag{Name: "utp-size", DefaultText: "256; --quick: 32",
				Usage: "the uTP workload's torrent size in `MIB`"},
			&cli.IntFlag{Name: "capacity-clients", DefaultText: "50; --quick: 4", Usage: "client processes of the capacity workload"},
			&cli.IntFlag{Name: "capacity-flows", DefaultText: "20; --quick: 4", Usage: "flows per client of the capacity workload"},
			&cli.StringSliceFlag{Name: "socks-pids",
				Usage: "`NAME=PID[,PID...][:PID[,PID...]]`: the processes of the --socks proxy NAME whose CPU per GiB is measured, " +
					"the one its flows reach, then after ':' those at the far end of its link (default: found from the sockets: " +
					"the process listening on its address and those at the other end of its loopback connections; Linux only)"},
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
