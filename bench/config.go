package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/socks"
)

// PathKind says how a path reaches the targets.
type PathKind string

const (
	// Direct is plain sockets: the baseline.
	Direct PathKind = "direct"
	// Local is a swarmvpn exit and client started here, on loopback.
	Local PathKind = "swarmvpn"
	// RemoteExit is a swarmvpn client started here, linked to an exit
	// elsewhere, which must reach the targets at Config.TargetHost.
	RemoteExit PathKind = "exit"
	// TwoHop is a swarmvpn exit, a relay and a client started here, on
	// loopback, the client reaching the exit through the relay (--hops 2).
	TwoHop PathKind = "swarmvpn-2hop"
	// Proxy is any SOCKS5 proxy: another swarmvpn client, ssh -D, a
	// provider's endpoint.
	Proxy PathKind = "socks5"
)

// Path is one way to the targets that a run measures.
type Path struct {
	// Name identifies the path in the report; unique within a run.
	Name string
	Kind PathKind
	// Exit is the RemoteExit's address, PEERID@HOST:PORT.
	Exit string
	// SOCKS is the Proxy.
	SOCKS SOCKS5
	// DelayedSOCKS, for a Proxy, is the same proxy with Config.RTT added on
	// its link (see LinkDelay), for the long-link workload; nil leaves that
	// workload unmeasured on this path. bench adds the delay itself on
	// every other kind of path.
	DelayedSOCKS *SOCKS5
	// PIDs, for a Proxy, are its processes whose CPU per GiB is measured;
	// nil: found from the sockets (see proxyCPU).
	PIDs *ProcSet
}

// Workload names, for Config.Workloads.
const (
	WorkBulk    = "bulk"
	WorkLatency = "latency"
	WorkSetup   = "setup"
	WorkBurst   = "burst"
	WorkIdle    = "idle"
	WorkUDP     = "udp"
	WorkRTT     = "rtt"
	WorkUTP     = "utp" // slow (minutes) and needs python3-libtorrent: not in the default set
	// WorkCapacity is many clients against one exit (capacity.go); slow,
	// so only when asked for.
	WorkCapacity = "capacity"
)

// AllWorkloads lists the workloads in the order they run.
var AllWorkloads = []string{WorkBulk, WorkLatency, WorkSetup, WorkBurst, WorkIdle, WorkUDP, WorkRTT, WorkUTP, WorkCapacity}

// Config is what a run measures and how hard. The zero value of a field
// means its default, which Quick makes smaller.
type Config struct {
	// Paths are measured in this order; the first is the one every
	// figure's ratio refers to. Required.
	Paths []Path

	// Exe is the swarmvpn binary for Local and RemoteExit paths.
	Exe string
	// ChildArgs, when set, rewrites the arguments of each process bench
	// starts (role "exit", "relay", "client", "client-rtt", ...): to
	// profile it, say.
	ChildArgs func(role string, args []string) []string

	// TargetHost is the IP the final hop reaches the targets at. Empty:
	// 127.0.0.1, and the targets listen on loopback only; otherwise they
	// listen on every interface (for a RemoteExit).
	TargetHost string
	// TargetPort is the targets' port, TCP and UDP; 0: any free port.
	TargetPort int

	// Workloads to run, by name (AllWorkloads); nil: all of them but
	// "utp" and "capacity", and "rtt" only when RTT is set.
	Workloads []string

	// Quick shrinks every default so that a run takes seconds: for tests.
	Quick bool

	Rounds int // measured rounds per figure; default 3 (Quick: 2)
	Warmup int // rounds run and discarded first; default 1; negative: none

	BulkDuration time.Duration // one bulk round; default 1s (Quick: 150ms)
	BulkFlows    []int         // parallel flows; default 1, 8 and 64
	LatencyCount int           // exchanges per latency round; default 2,000 (Quick: 200)
	SetupCount   int           // flows per one-at-a-time round; default 200 (Quick: 20)
	BurstCount   int           // flows in a burst; default 1,000 (Quick: 200)
	IdleFlows    int           // idle flows held; default 10,000 (Quick: 500)
	UDPDuration  time.Duration // one UDP round; default 1s (Quick: 150ms)
	UDPSizes     []int         // datagram payload sizes; default 100 and 1,400 bytes

	// RTT, when set, adds the long-link workload: one flow each way, and
	// request/response, over a link with this round-trip time added. On a
	// TwoHop path each hop is such a link (the client's to the relay, the
	// relay's to the exit), so its round trip is about twice one hop's.
	RTT         time.Duration
	RTTDuration time.Duration // one long-link round; default 3s (Quick: 300ms)

	// Capacity sizes the capacity workload.
	Capacity CapacityConfig

	// UTP sets the uTP torrent workload's sizes (utp.go).
	UTP UTPConfig

	// Progress, when set, is told what runs.
	Progress func(Status)
	// Log receives what the run does at Debug. nil discards.
	Log *slog.Logger
}

// withDefaults fills in the zero fields.
func (c Config) withDefaults() Config {
	q := func(normal, quick int) int {
		if c.Quick {
			return quick
		}
		return normal
	}
	qd := func(normal, quick time.Duration) time.Duration {
		if c.Quick {
			return quick
		}
		return normal
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.Rounds, q(3, 2))
	setInt(&c.Warmup, 1)
	setDur(&c.BulkDuration, qd(time.Second, 150*time.Millisecond))
	if len(c.BulkFlows) == 0 {
		c.BulkFlows = []int{1, 8, 64}
	}
	setInt(&c.LatencyCount, q(2000, 200))
	setInt(&c.SetupCount, q(200, 20))
	setInt(&c.BurstCount, q(1000, 200))
	setInt(&c.IdleFlows, q(10000, 500))
	setDur(&c.UDPDuration, qd(time.Second, 150*time.Millisecond))
	if len(c.UDPSizes) == 0 {
		c.UDPSizes = []int{100, 1400}
	}
	setDur(&c.RTTDuration, qd(3*time.Second, 300*time.Millisecond))
	c.Capacity = c.Capacity.withDefaults(c.Quick)
	c.UTP = c.UTP.withDefaults(c.Quick)
	if c.Workloads == nil {
		for _, w := range AllWorkloads {
			if (w != WorkRTT || c.RTT > 0) && w != WorkCapacity && w != WorkUTP {
				c.Workloads = append(c.Workloads, w)
			}
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Bounds on what one run may ask for: each load loop stays bounded.
const (
	maxRounds     = 100
	maxFlows      = 1024
	maxCount      = 1_000_000
	maxIdleFlows  = 200_000
	maxRoundTime  = 5 * time.Minute
	maxDatagram   = 65_000
	minDatagram   = 16
	maxRTT        = 10 * time.Second
	maxNameLength = 40
)

// validate checks the whole config; the first problem found is the error.
func (c Config) validate() error {
	for _, check := range []func() error{c.validatePaths, c.validateTargets, c.validateWorkloads, c.validateBounds, c.Capacity.validate, c.UTP.validate} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// validatePaths checks that there are paths, each named once, of a known
// kind, with what that kind needs.
func (c Config) validatePaths() error {
	if len(c.Paths) == 0 {
		return errors.New("nothing to measure: give at least one path")
	}
	names := map[string]bool{}
	locals, twoHops := 0, 0
	for _, p := range c.Paths {
		if p.Name == "" || len(p.Name) > maxNameLength {
			return fmt.Errorf("path name %q: want 1 to %d characters", p.Name, maxNameLength)
		}
		if names[p.Name] {
			return fmt.Errorf("two paths are named %q: give each its own name", p.Name)
		}
		names[p.Name] = true
		switch p.Kind {
		case Direct:
		case Local:
			locals++
		case TwoHop:
			twoHops++
		case RemoteExit:
			if p.Exit == "" {
				return fmt.Errorf("path %s: no exit address", p.Name)
			}
		case Proxy:
			if _, err := socks.AppendAddr(nil, p.SOCKS.Addr); err != nil {
				return fmt.Errorf("path %s: SOCKS5 address %q: want HOST:PORT", p.Name, p.SOCKS.Addr)
			}
			if err := p.PIDs.validate(); err != nil {
				return fmt.Errorf("path %s: %w", p.Name, err)
			}
		default:
			return fmt.Errorf("path %s: unknown kind %q", p.Name, p.Kind)
		}
		if (p.Kind == Local || p.Kind == RemoteExit || p.Kind == TwoHop) && c.Exe == "" {
			return fmt.Errorf("path %s: no swarmvpn binary to start", p.Name)
		}
	}
	if locals > 1 || twoHops > 1 {
		return errors.New("at most one local swarmvpn path of each length")
	}
	return nil
}

// validateTargets checks where the targets listen.
func (c Config) validateTargets() error {
	if c.TargetHost != "" {
		if _, err := netip.ParseAddr(c.TargetHost); err != nil {
			return fmt.Errorf("target host %q: want an IP address that the exit can reach", c.TargetHost)
		}
	}
	if c.TargetPort < 0 || c.TargetPort > 65535 {
		return fmt.Errorf("target port %d: want 0 to 65535", c.TargetPort)
	}
	return nil
}

// validateWorkloads checks the workloads asked for and the link delay.
func (c Config) validateWorkloads() error {
	for _, w := range c.Workloads {
		if !slices.Contains(AllWorkloads, w) {
			return fmt.Errorf("unknown workload %q: want some of %v", w, AllWorkloads)
		}
		if w == WorkRTT && c.RTT <= 0 {
			return errors.New("the rtt workload needs a link delay: set the RTT (--rtt 50ms)")
		}
	}
	if c.RTT < 0 || c.RTT > maxRTT {
		return fmt.Errorf("RTT %v: want up to %v", c.RTT, maxRTT)
	}
	return nil
}

// validateBounds keeps every round, count and size within what one run
// may ask for.
func (c Config) validateBounds() error {
	if c.Rounds < 1 || c.Rounds > maxRounds {
		return fmt.Errorf("rounds %d: want 1 to %d", c.Rounds, maxRounds)
	}
	if c.Warmup > maxRounds {
		return fmt.Errorf("warm-up rounds %d: want at most %d", c.Warmup, maxRounds)
	}
	for _, n := range c.BulkFlows {
		if n < 1 || n > maxFlows {
			return fmt.Errorf("bulk flows %d: want 1 to %d", n, maxFlows)
		}
	}
	for _, d := range []time.Duration{c.BulkDuration, c.UDPDuration, c.RTTDuration} {
		if d <= 0 || d > maxRoundTime {
			return fmt.Errorf("round duration %v: want more than 0 and at most %v", d, maxRoundTime)
		}
	}
	for _, n := range []int{c.LatencyCount, c.SetupCount, c.BurstCount} {
		if n < 1 || n > maxCount {
			return fmt.Errorf("count %d: want 1 to %d", n, maxCount)
		}
	}
	if c.IdleFlows < 1 || c.IdleFlows > maxIdleFlows {
		return fmt.Errorf("idle flows %d: want 1 to %d", c.IdleFlows, maxIdleFlows)
	}
	for _, n := range c.UDPSizes {
		if n < minDatagram || n > maxDatagram {
			return fmt.Errorf("datagram size %d: want %d to %d bytes", n, minDatagram, maxDatagram)
		}
	}
	return nil
}
