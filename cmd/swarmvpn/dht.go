package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sync/errgroup"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/exitnet/discovery/mainline"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// dhtFlags are the DHT flags of exit and connect.
func dhtFlags(role string) []cli.Flag {
	use := "publish this exit on the BitTorrent Mainline DHT so that clients anywhere can find it (--dht=false to stay off it)"
	if role == "client" {
		use = "find exits on the BitTorrent Mainline DHT while fewer than three good ones are known (--dht=false: only --exit, mDNS and exits learned before)"
	}
	return []cli.Flag{
		&cli.BoolFlag{Name: "dht", Value: true, Sources: env("dht"), Usage: use},
		bootstrapFlag("dht-bootstrap"),
		stringFlag("dht-listen", ":0", "the DHT node's UDP `HOST:PORT`"),
	}
}

func bootstrapFlag(name string) cli.Flag {
	return &cli.StringSliceFlag{Name: name, Sources: env(name),
		Usage: "start from the DHT node at `HOST:PORT`; repeatable (default: the public routers " +
			strings.Join(mainline.DefaultBootstrap, ", ") + "; \"none\": none, for the first node of a private DHT)"}
}

// bootstrap reads a bootstrap flag: nil for the default routers, an empty
// list for "none".
func bootstrap(cmd *cli.Command, name string) ([]string, error) {
	list := cmd.StringSlice(name)
	if len(list) == 0 {
		return nil, nil
	}
	out := []string{}
	for _, b := range list {
		if b == "none" {
			continue
		}
		host, port, err := net.SplitHostPort(b)
		if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("--%s %q: want HOST:PORT, e.g. router.bittorrent.com:6881", name, b)
		}
		out = append(out, b)
	}
	return out, nil
}

// exitDHT returns the exit's DHT settings, or nil with --dht=false. The
// routing table and the last sequence number are kept in the state dir.
func exitDHT(cmd *cli.Command, log *slog.Logger) (*exit.DHTConfig, error) {
	if !cmd.Bool("dht") {
		return nil, nil
	}
	bs, err := bootstrap(cmd, "dht-bootstrap")
	if err != nil {
		return nil, err
	}
	dir, err := stateDir(cmd)
	if err != nil {
		return nil, err
	}
	return &exit.DHTConfig{
		Node: mainline.Config{Listen: cmd.String("dht-listen"), Bootstrap: bs, StateFile: filepath.Join(dir, "dht-exit.state"),
			AllowPrivate: cmd.Bool("allow-private"), Log: log},
		SeqFile: filepath.Join(dir, "dht-seq"),
	}, nil
}

// clientDHT returns the client's DHT settings, or nil with --dht=false.
func clientDHT(cmd *cli.Command) (*client.DHT, error) {
	if !cmd.Bool("dht") {
		return nil, nil
	}
	bs, err := bootstrap(cmd, "dht-bootstrap")
	if err != nil {
		return nil, err
	}
	every := cmd.Duration("dht-lookup-every")
	if every < time.Second {
		return nil, fmt.Errorf("--dht-lookup-every %v: want at least 1s", every)
	}
	return &client.DHT{Bootstrap: bs, Listen: cmd.String("dht-listen"), NoDirect: !cmd.Bool("dht-direct"),
		AllowPrivate: cmd.Bool("allow-private-exits"), Every: every}, nil
}

// parseExit reads --exit: PEERID@HOST:PORT, or PEERID alone (found on the
// DHT by its peer ID).
func parseExit(s string) (link.ExitAddr, error) {
	if !strings.Contains(s, "@") {
		id, err := link.ParsePeerID(s)
		if err != nil {
			return link.ExitAddr{}, fmt.Errorf("exit %q: want PEERID@HOST:PORT, or a PEERID alone to find it on the DHT: %w", s, err)
		}
		return link.ExitAddr{ID: id}, nil
	}
	return link.ParseExitAddr(s)
}

// readTrust reads a file of peer IDs, one per line, # comments.
func readTrust(path string) ([]link.PeerID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--trust: %w", err)
	}
	defer f.Close()
	var ids []link.PeerID
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		id, err := link.ParsePeerID(line)
		if err != nil {
			return nil, fmt.Errorf("--trust %s line %d: %w", path, n, err)
		}
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--trust %s: %w", path, err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("--trust %s lists no peer ID: the client could use no exit", path)
	}
	return ids, nil
}

// dhtCommand runs a plain DHT node: for private networks, labs and tests.
func dhtCommand() *cli.Command {
	return &cli.Command{
		Name:  "dht",
		Usage: "run a plain BitTorrent Mainline DHT node (for a private DHT, a lab or tests)",
		Flags: append(commonFlags(),
			stringFlag("listen", "0.0.0.0:6881", "the node's UDP `HOST:PORT`"),
			bootstrapFlag("bootstrap"),
			&cli.BoolFlag{Name: "allow-private", Sources: env("allow-private"),
				Usage: "accept DHT nodes at loopback and private addresses (labs)"},
		),
		Before: applyConfig,
		Action: runDHT,
	}
}

func runDHT(ctx context.Context, cmd *cli.Command) error {
	log, err := newLogger(cmd)
	if err != nil {
		return err
	}
	bs, err := bootstrap(cmd, "bootstrap")
	if err != nil {
		return err
	}
	cfg := mainline.Config{Listen: cmd.String("listen"), Bootstrap: bs, AllowPrivate: cmd.Bool("allow-private"), Log: log}
	if cmd.String("state-dir") != "" {
		cfg.StateFile = filepath.Join(cmd.String("state-dir"), "dht-node.state")
	}
	conn, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	cfg.Conn = conn
	n, err := mainline.New(cfg)
	if err != nil {
		conn.Close()
		return err
	}
	metricsLn, err := listenMetrics(cmd, log)
	if err != nil {
		conn.Close()
		return err
	}
	fmt.Fprintln(cmd.Root().Writer, conn.LocalAddr())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.Run(ctx) })
	if metricsLn != nil {
		reg := newRegistry(dhtCollector(func() (mainline.Stats, bool) { return n.Stats(), true }, nil))
		g.Go(func() error { return serveMetrics(ctx, metricsLn, reg, log) })
	}
	return g.Wait()
}
