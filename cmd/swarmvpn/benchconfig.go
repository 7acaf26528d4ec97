package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/swarmvpn/swarmvpn/bench"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/urfave/cli/v3"
)

// benchConfig turns the flags into a bench.Config, checking each: how to
// measure, then which paths to measure.
func benchConfig(cmd *cli.Command) (bench.Config, error) {
	exe, err := os.Executable()
	if err != nil {
		return bench.Config{}, fmt.Errorf("cannot find this binary to start the exit and client: %w", err)
	}
	cfg, err := benchMeasures(cmd)
	if err != nil {
		return cfg, err
	}
	cfg.Exe = exe
	cfg.Paths, err = benchPaths(cmd, cfg)
	return cfg, err
}

// benchMeasures reads the flags that say how to measure: rounds,
// durations, targets and workloads.
func benchMeasures(cmd *cli.Command) (bench.Config, error) {
	cfg := bench.Config{
		Quick:        cmd.Bool("quick"),
		TargetHost:   cmd.String("target-host"),
		TargetPort:   int(cmd.Int("target-port")),
		RTT:          cmd.Duration("rtt"),
		Rounds:       int(cmd.Int("rounds")),
		BulkDuration: cmd.Duration("duration"),
		UDPDuration:  cmd.Duration("duration"),
		RTTDuration:  cmd.Duration("duration"),
		IdleFlows:    int(cmd.Int("idle-flows")),
		BurstCount:   int(cmd.Int("burst")),
		Capacity: bench.CapacityConfig{
			Clients: int(cmd.Int("capacity-clients")),
			Flows:   int(cmd.Int("capacity-flows")),
		},
	}
	switch w := cmd.Int("warmup"); {
	case w < 0:
		return cfg, errors.New("--warmup: want 0 or more rounds")
	case w == 0:
		cfg.Warmup = -1 // none: 0 would mean the default
	default:
		cfg.Warmup = int(w)
	}
	if n := cmd.Int("utp-size"); n != 0 {
		if n < 1 || n > 16<<10 {
			return cfg, fmt.Errorf("--utp-size %d: want 1 to %d MiB", n, 16<<10)
		}
		cfg.UTP.Size = int64(n) << 20
	}
	if cfg.TargetHost != "" {
		if net.ParseIP(cfg.TargetHost) == nil {
			return cfg, fmt.Errorf("--target-host %q: want an IP address of this machine that the exit can reach", cfg.TargetHost)
		}
	}
	if list := cmd.String("bulk-flows"); list != "" {
		for _, f := range strings.Split(list, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 1024 {
				return cfg, fmt.Errorf("--bulk-flows %q: want numbers of flows from 1 to 1024, comma-separated, e.g. 1,8,64", list)
			}
			cfg.BulkFlows = append(cfg.BulkFlows, n)
		}
	}
	if w := cmd.String("workloads"); w != "" {
		for _, name := range strings.Split(w, ",") {
			cfg.Workloads = append(cfg.Workloads, strings.TrimSpace(name))
		}
	}
	return cfg, nil
}

// benchPaths reads the flags that say which paths to measure: swarmvpn on
// loopback, a remote exit, other SOCKS5 proxies (some over a delayed link),
// and the direct path.
func benchPaths(cmd *cli.Command, cfg bench.Config) ([]bench.Path, error) {
	var paths []bench.Path
	exit := cmd.String("exit")
	socks := cmd.StringSlice("socks")
	hops := cmd.Int("hops")
	if hops < 1 || hops > 2 {
		return nil, fmt.Errorf("--hops %d: want 1, or 2 to add the path through a relay", hops)
	}
	if cmd.Bool("local") || (len(socks) == 0 && exit == "") || hops == 2 {
		paths = append(paths, bench.Path{Name: "swarmvpn", Kind: bench.Local})
	}
	if hops == 2 {
		paths = append(paths, bench.Path{Name: "2-hop", Kind: bench.TwoHop})
	}
	if exit != "" {
		addr, err := link.ParseExitAddr(exit)
		if err != nil {
			return nil, fmt.Errorf("--exit: %w", err)
		}
		host, _, _ := net.SplitHostPort(addr.Addr)
		if ip := net.ParseIP(host); cfg.TargetHost == "" && (ip == nil || !ip.IsLoopback()) {
			return nil, errors.New("--exit: give --target-host too: the IP of this machine that the exit reaches the targets at (and open --target-port in the firewall)")
		}
		paths = append(paths, bench.Path{Name: "exit", Kind: bench.RemoteExit, Exit: addr.String()})
	}
	byName := map[string]int{}
	for _, s := range socks {
		name, proxy, err := parseSOCKSFlag(s)
		if err != nil {
			return nil, fmt.Errorf("--socks %w", err)
		}
		if _, dup := byName[name]; dup || name == "swarmvpn" || name == "exit" || name == "direct" || name == "2-hop" {
			return nil, fmt.Errorf("--socks %s: the name %q is taken: give each proxy its own, NAME=HOST:PORT", s, name)
		}
		byName[name] = len(paths)
		paths = append(paths, bench.Path{Name: name, Kind: bench.Proxy, SOCKS: proxy})
	}
	for _, s := range cmd.StringSlice("rtt-socks") {
		if cfg.RTT <= 0 {
			return nil, errors.New("--rtt-socks goes with --rtt: give the delay its link has, e.g. --rtt 50ms")
		}
		name, proxy, err := parseSOCKSFlag(s)
		if err != nil || !strings.Contains(s, "=") {
			return nil, fmt.Errorf("--rtt-socks %q: want NAME=HOST:PORT, NAME being a --socks proxy's name", s)
		}
		i, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("--rtt-socks %s: no --socks proxy is named %q (name it: --socks %s=HOST:PORT)", s, name, name)
		}
		paths[i].DelayedSOCKS = &proxy
	}
	for _, s := range cmd.StringSlice("socks-pids") {
		name, pids, err := parseSOCKSPIDs(s)
		if err != nil {
			return nil, err
		}
		i, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("--socks-pids %s: no --socks proxy is named %q (name it: --socks %s=HOST:PORT)", s, name, name)
		}
		paths[i].PIDs = pids
	}
	if cmd.Bool("direct") {
		paths = append(paths, bench.Path{Name: "direct", Kind: bench.Direct})
	}
	return paths, nil
}

var proxyName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]*$`)

// parseSOCKSFlag parses [NAME=][USER:PASS@]HOST:PORT. Without a name, the
// proxy is named by its HOST:PORT.
func parseSOCKSFlag(s string) (string, bench.SOCKS5, error) {
	name, rest := "", s
	if n, r, ok := strings.Cut(s, "="); ok && proxyName.MatchString(n) {
		name, rest = n, r
	}
	var p bench.SOCKS5
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, pass, ok := strings.Cut(rest[:at], ":")
		if !ok || user == "" || len(user) > 255 || len(pass) > 255 {
			return "", p, fmt.Errorf("%q: want USER:PASS@HOST:PORT for a proxy with a password", s)
		}
		p.User, p.Pass, rest = user, pass, rest[at+1:]
	}
	host, port, err := net.SplitHostPort(rest)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return "", p, fmt.Errorf("%q: want [NAME=][USER:PASS@]HOST:PORT, e.g. ssh=127.0.0.1:1081", s)
	}
	p.Addr = rest
	if name == "" {
		name = rest
	}
	return name, p, nil
}

// parseSOCKSPIDs parses NAME=PID[,PID...][:PID[,PID...]]: a proxy's
// client-side processes, then its far side's.
func parseSOCKSPIDs(s string) (string, *bench.ProcSet, error) {
	bad := fmt.Errorf("--socks-pids %q: want NAME=PID[,PID...][:PID[,PID...]], e.g. ssh=4100:4108,4109 (ssh, then sshd)", s)
	name, rest, ok := strings.Cut(s, "=")
	if !ok || !proxyName.MatchString(name) {
		return "", nil, bad
	}
	list := func(s string) ([]int, error) {
		var pids []int
		for _, f := range strings.Split(s, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid < 1 {
				return nil, bad
			}
			pids = append(pids, pid)
		}
		return pids, nil
	}
	client, far, hasFar := strings.Cut(rest, ":")
	var set bench.ProcSet
	var err error
	if set.Client, err = list(client); err != nil {
		return "", nil, err
	}
	if hasFar {
		if set.Exit, err = list(far); err != nil {
			return "", nil, err
		}
	}
	return name, &set, nil
}
