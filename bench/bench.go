package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/socks"
)

// Bench is a validated run, ready to start.
type Bench struct {
	cfg Config

	mu     sync.Mutex
	last   Status    // what Progress was last told
	lastAt time.Time // when
}

// New fills in cfg's defaults and validates it; nothing is started yet.
func New(cfg Config) (*Bench, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Bench{cfg: cfg}, nil
}

// fdReserve is what bench keeps of its open-file limit for everything but
// the flows it holds.
const fdReserve = 512

// readyTimeout bounds waiting for a path's first flow to get through.
const readyTimeout = 15 * time.Second

// settleTimeout bounds waiting, after a round, for the targets to see the
// round's flows closed.
const settleTimeout = 20 * time.Second

// path is a Path made ready to measure.
type path struct {
	Path
	via     string   // what the flows go through, for the report
	dial    dialFunc // a flow to a target
	udp     func(ctx context.Context) (packetPath, error)
	socks   *SOCKS5  // the proxy its flows go through; nil: direct
	slow    dialFunc // a flow to the TCP target over the delayed link; nil: not measured
	slowWhy string   // why slow is nil

	exit, client *Proc  // this path's processes, when bench started them
	exitAddr     string // the exit's address, when bench started it
	cpu          cpuProcs
	rssBase      []int64 // their memory before the first idle round
	dead         error   // set once one of its processes has ended
}

// procs returns the path's processes whose memory is measured: its exit
// and its client, or nil for those it has not.
func (p *path) procs() []*Proc { return []*Proc{p.exit, p.client} }

// Run starts the targets and the processes the paths need, runs every
// workload round by round alternating between paths, stops everything it
// started (on every way out, a cancelled ctx included) and returns the
// report. A path that fails a workload gets the error in the report, not a
// failed run; Run fails only when it cannot start or is cancelled.
func (b *Bench) Run(ctx context.Context) (*Report, error) {
	cfg := b.cfg
	rep := newReport(cfg)
	started := time.Now()

	burstFlows, idleFlows, err := fitFileLimit(cfg, rep)
	if err != nil {
		return nil, err
	}
	rep.Settings.IdleFlows, rep.Settings.BurstFlows = idleFlows, burstFlows

	dir, err := os.MkdirTemp("", "swarmvpn-bench-")
	if err != nil {
		return nil, fmt.Errorf("temporary state dir: %w", err)
	}
	defer os.RemoveAll(dir)

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var procs []*Proc
	defer func() {
		// At once: the capacity workload starts dozens.
		var stopping sync.WaitGroup
		for _, p := range procs {
			stopping.Go(p.Stop)
		}
		stopping.Wait()
	}()

	targets, err := openTargets(cfg)
	if err != nil {
		return nil, err
	}
	wg.Go(func() { targets.Serve(ctx) })
	rep.Settings.Targets = targets.Addr

	s := &setup{cfg: cfg, ctx: ctx, dir: dir, wg: &wg, targets: targets, procs: &procs}
	paths, err := s.paths(rep, started)
	if err != nil {
		return nil, err
	}

	// Idle flows run first, while the processes are fresh: their memory
	// before the first idle round is then the process's own, not heap left
	// over from bulk rounds that new flows would reuse unseen. The report
	// keeps the usual order.
	ws := addCPU(b.workloads(targets.Addr, burstFlows, idleFlows, rep.note))
	if slices.Contains(cfg.Workloads, WorkCapacity) {
		ws = append(ws, s.capacityWorkload(rep.note, started))
	}
	slices.SortStableFunc(ws, func(a, b workload) int {
		return cmp.Compare(btoi(a.group != WorkIdle), btoi(b.group != WorkIdle))
	})
	for _, w := range ws {
		if w.close != nil {
			defer w.close()
		}
	}
	for _, w := range ws {
		if err := b.runWorkload(ctx, rep, w, paths, targets, started); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(rep.Figures, func(a, b Figure) int {
		return cmp.Compare(slices.Index(AllWorkloads, a.Workload), slices.Index(AllWorkloads, b.Workload))
	})
	rep.finish(started)
	return rep, nil
}

// fitFileLimit raises the open-file limit for the flows cfg holds at once
// and returns the burst and idle flow counts that fit it, with a note in
// rep for each count it had to reduce.
func fitFileLimit(cfg Config, rep *Report) (burstFlows, idleFlows int, err error) {
	burstFlows, idleFlows = cfg.BurstCount, cfg.IdleFlows
	want := uint64(2*max(burstFlows, idleFlows) + fdReserve)
	limit, err := raiseFileLimit(want)
	if err != nil {
		return 0, 0, fmt.Errorf("open-file limit: %w", err)
	}
	if limit < want {
		// bench holds both ends of each flow: the application's and the
		// target's.
		room := max((int(limit)-fdReserve)/2, 1)
		if slices.Contains(cfg.Workloads, WorkIdle) && idleFlows > room {
			rep.note("idle flows reduced from %d to %d: the open-file limit is %d (raise it: ulimit -n %d, as root if needed)",
				idleFlows, room, limit, want)
			idleFlows = room
		}
		if slices.Contains(cfg.Workloads, WorkBurst) && burstFlows > room {
			rep.note("burst reduced from %d to %d flows: the open-file limit is %d (raise it: ulimit -n %d)",
				burstFlows, room, limit, want)
			burstFlows = room
		}
	}
	return burstFlows, idleFlows, nil
}

// openTargets opens the targets: on loopback, or on every interface when
// the far side reaches them at cfg.TargetHost.
func openTargets(cfg Config) (*Targets, error) {
	listenHost, advertise := "127.0.0.1", "127.0.0.1"
	if cfg.TargetHost != "" {
		advertise, listenHost = cfg.TargetHost, "0.0.0.0"
		if strings.Contains(cfg.TargetHost, ":") {
			listenHost = "::"
		}
	}
	return ListenTargets(listenHost, cfg.TargetPort, advertise)
}

// setup makes Paths ready: it starts what they need and checks that a
// first flow gets through each.
type setup struct {
	cfg     Config
	ctx     context.Context
	dir     string
	wg      *sync.WaitGroup
	targets *Targets
	procs   *[]*Proc
}

func (s *setup) wrap(role string, args []string) []string {
	if s.cfg.ChildArgs != nil {
		return s.cfg.ChildArgs(role, args)
	}
	return args
}

// paths makes every configured path ready, in order, and lists it in rep.
func (s *setup) paths(rep *Report, started time.Time) ([]*path, error) {
	var paths []*path
	for _, spec := range s.cfg.Paths {
		if s.cfg.Progress != nil {
			s.cfg.Progress(Status{Workload: "starting", Path: spec.Name, Elapsed: time.Since(started)})
		}
		p, err := s.path(spec)
		if err != nil {
			return nil, fmt.Errorf("path %s: %w", spec.Name, err)
		}
		paths = append(paths, p)
		rep.Paths = append(rep.Paths, PathInfo{Name: p.Name, Kind: string(p.Kind), Via: p.via})
	}
	return paths, nil
}

func (s *setup) path(spec Path) (*path, error) {
	p := &path{Path: spec}
	ctx, cfg, tgt := s.ctx, s.cfg, s.targets.Addr
	switch spec.Kind {
	case Direct:
		var d net.Dialer
		p.via = "-"
		p.dial = func(ctx context.Context, target string) (net.Conn, error) { return d.DialContext(ctx, "tcp", target) }
		p.udp = func(context.Context) (packetPath, error) { return dialUDP(tgt) }
		p.cpu.why = "not measured: the direct path has no proxy process"
		if cfg.RTT > 0 {
			line, err := s.delayLine(tgt)
			if err != nil {
				return nil, err
			}
			p.slow = func(ctx context.Context, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", line) }
		}
	case Local, RemoteExit, TwoHop:
		exit := spec.Exit
		dir := func(role string) string { return filepath.Join(s.dir, role+suffix(spec.Kind)) }
		if spec.Kind == Local || spec.Kind == TwoHop {
			proc, addr, err := startExit(ctx, "exit"+suffix(spec.Kind), cfg.Exe, dir("exit"), s.wrap)
			if err != nil {
				return nil, err
			}
			*s.procs = append(*s.procs, proc)
			p.exit, exit, p.exitAddr = proc, addr, addr
		}
		var extra []string
		var relay []*Proc
		var relayAddr string
		via := "SOCKS5 %s → exit " + exitHost(exit)
		if spec.Kind == TwoHop {
			// The relay is pinned: the pool pairs pinned relays with exits
			// in the same network, as both are on loopback here.
			proc, addr, err := startExit(ctx, "relay", cfg.Exe, dir("relay"), s.wrap)
			if err != nil {
				return nil, err
			}
			*s.procs = append(*s.procs, proc)
			relay, relayAddr = append(relay, proc), addr
			extra = []string{"--hops", "2", "--relay", addr}
			via = "SOCKS5 %s → relay " + exitHost(addr) + " → exit " + exitHost(exit)
		}
		client, socks, err := startClient(ctx, "client"+suffix(spec.Kind), cfg.Exe, dir("client"), exit, s.wrap, extra...)
		if err != nil {
			return nil, err
		}
		*s.procs = append(*s.procs, client)
		p.client, p.via = client, fmt.Sprintf(via, socks)
		p.cpu = localCPU(client, p.exit, relay...)
		if len(relay) > 0 && (slices.Contains(cfg.Workloads, WorkBulk) || slices.Contains(cfg.Workloads, WorkUDP)) {
			p.via += " (CPU per GiB: the exit's includes the relay's)"
		}
		p.useSOCKS(SOCKS5{Addr: socks}, tgt)
		if cfg.RTT > 0 {
			if p.slow, err = s.slowClient(spec.Kind, exit, relayAddr); err != nil {
				return nil, err
			}
			if spec.Kind == TwoHop {
				p.via += fmt.Sprintf(" (long links: client → relay and relay → exit each with %v added)", cfg.RTT)
			}
		}
	case Proxy:
		p.via = "SOCKS5 " + spec.SOCKS.Addr
		p.useSOCKS(spec.SOCKS, tgt)
		if p.cpu = proxyCPU(spec); p.cpu.note != "" && (slices.Contains(cfg.Workloads, WorkBulk) || slices.Contains(cfg.Workloads, WorkUDP)) {
			p.via += " (" + p.cpu.note + ")"
		}
		if spec.DelayedSOCKS != nil {
			p.slow = spec.DelayedSOCKS.Dial
		} else if cfg.RTT > 0 {
			p.slowWhy = "not measured: bench cannot add delay inside this proxy's link; " +
				"give the same proxy over a delayed link (see 'swarmvpn bench delay --help')"
		}
	}
	if err := waitReady(ctx, p.dial, tgt); err != nil {
		return nil, readyError(p, tgt, err)
	}
	if p.slow != nil {
		if err := waitReady(ctx, p.slow, tgt); err != nil {
			return nil, fmt.Errorf("over the delayed link: %w", readyError(p, tgt, err))
		}
	}
	return p, nil
}

func (p *path) useSOCKS(s SOCKS5, target string) {
	p.socks = &s
	p.dial = s.Dial
	p.udp = func(ctx context.Context) (packetPath, error) { return associate(ctx, s, target) }
}

// suffix keeps the state dirs and roles of a two-hop path apart from
// those of the one-hop path.
func suffix(k PathKind) string {
	if k == TwoHop {
		return "-2hop"
	}
	return ""
}

// exitHost returns the HOST:PORT of an exit address PEERID@HOST:PORT.
func exitHost(exit string) string {
	i := strings.LastIndex(exit, "@")
	return exit[i+1:]
}

// slowClient starts a second client of the path's exit (PEERID@HOST:PORT)
// whose links go through delay lines, and returns a dialer through it. On
// one hop its link to the exit is a long link; on two hops (relay, the
// relay's PEERID@HOST:PORT) each hop is: the client's link to the relay,
// and the relay's link to the exit, as the client names the exit's address
// that the relay dials. A two-hop path's round trip is then about twice
// one hop's, as with a relay and an exit each far away.
func (s *setup) slowClient(kind PathKind, exit, relay string) (dialFunc, error) {
	delayed := func(addr string) (string, error) {
		i := strings.LastIndex(addr, "@")
		line, err := s.delayLine(addr[i+1:])
		return addr[:i+1] + line, err
	}
	exitVia, err := delayed(exit)
	if err != nil {
		return nil, err
	}
	var extra []string
	if kind == TwoHop {
		relayVia, err := delayed(relay)
		if err != nil {
			return nil, err
		}
		extra = []string{"--hops", "2", "--relay", relayVia}
	}
	role := "client-rtt" + suffix(kind)
	proc, socks, err := startClient(s.ctx, role, s.cfg.Exe, filepath.Join(s.dir, role), exitVia, s.wrap, extra...)
	if err != nil {
		return nil, err
	}
	*s.procs = append(*s.procs, proc)
	return SOCKS5{Addr: socks}.Dial, nil
}

// delayLine starts a LinkDelay to upstream on a free loopback port and
// returns its address.
func (s *setup) delayLine(upstream string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("link delay: %w", err)
	}
	l := &LinkDelay{Upstream: upstream, RTT: s.cfg.RTT}
	s.wg.Go(func() { l.Serve(s.ctx, ln) })
	return ln.Addr().String(), nil
}

// waitReady opens echo flows until one gets its byte back, for up to
// readyTimeout: a client's link to its exit comes up after it says it is
// ready.
func waitReady(ctx context.Context, dial dialFunc, target string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	backoff := 10 * time.Millisecond
	for {
		c, err := openFlow(ctx, dial, target, opEcho)
		if err == nil {
			c.Close()
			return nil
		}
		if re, ok := errors.AsType[*socks.ReplyError](err); ok && re.Code != 3 && re.Code != 1 {
			return err // a refusal, not a link still coming up
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// readyError explains a path that cannot reach the targets.
func readyError(p *path, target string, err error) error {
	re, _ := errors.AsType[*socks.ReplyError](err)
	switch {
	case re != nil && re.Code == 2 && p.Kind == RemoteExit:
		return fmt.Errorf("the exit refuses the targets at %s (%v): an exit refuses private addresses unless it runs with --allow-private or --rule \"allow ...\"; or give --target-host a public address of this machine", target, err)
	case re != nil && re.Code == 7:
		return fmt.Errorf("%v: this SOCKS5 proxy has no CONNECT", err)
	case p.Kind == RemoteExit || p.Kind == Proxy && !isLoopbackAddr(target):
		return fmt.Errorf("no flow reached the targets at %s within %v (%v): the far side must reach that address and port (TCP and UDP): check --target-host and the firewall", target, readyTimeout, err)
	}
	return fmt.Errorf("no flow reached the targets at %s within %v: %w", target, readyTimeout, err)
}

func isLoopbackAddr(hostport string) bool {
	host, _, _ := net.SplitHostPort(hostport)
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// runWorkload measures w on every path: the warm-up rounds, then the
// measured ones, each round going through the paths in turn. It adds w's
// figures to rep.
func (b *Bench) runWorkload(ctx context.Context, rep *Report, w workload, paths []*path, targets *Targets, started time.Time) error {
	vals, why, err := b.rounds(ctx, w, paths, targets, started)
	if err != nil {
		return err
	}
	rep.Figures = append(rep.Figures, w.figures(paths, vals, why, b.cfg.Rounds)...)
	return nil
}

// rounds runs w's rounds and returns, for each path, each figure's
// measured values ([path][figure][round]) and why the path has none, if it
// failed.
func (b *Bench) rounds(ctx context.Context, w workload, paths []*path, targets *Targets, started time.Time) (vals [][][]float64, why []string, err error) {
	cfg := b.cfg
	warm := max(cfg.Warmup, 0)
	if w.noWarm {
		warm = 0
	}
	why = make([]string, len(paths))
	vals = make([][][]float64, len(paths))
	for i, p := range paths {
		vals[i] = make([][]float64, len(w.figs))
		if w.skip != nil {
			why[i] = w.skip(p)
		}
	}
	for r := range warm + cfg.Rounds {
		for i, p := range paths {
			if p.dead != nil {
				why[i] = p.dead.Error()
			}
			if why[i] != "" {
				continue
			}
			b.status(Status{Workload: w.title, Path: p.Name, Round: r - warm + 1, Rounds: cfg.Rounds,
				Elapsed: time.Since(started)})
			v, err := w.run(ctx, p)
			if ctx.Err() != nil {
				return nil, nil, context.Cause(ctx)
			}
			if dead := p.checkProcs(); dead != nil {
				err = dead
			}
			if err != nil {
				why[i] = err.Error()
				cfg.Log.Debug("round failed", "workload", w.title, "path", p.Name, "err", err)
			} else if r >= warm {
				for f := range w.figs {
					vals[i][f] = append(vals[i][f], v[f])
				}
			}
			b.settle(ctx, w, p, targets)
		}
	}
	return vals, why, nil
}

// status tells Progress, if set, what runs now.
func (b *Bench) status(s Status) {
	if b.cfg.Progress == nil {
		return
	}
	b.mu.Lock()
	b.last, b.lastAt = s, time.Now()
	b.mu.Unlock()
	b.cfg.Progress(s)
}

// detail tells Progress, if set, how far the round that runs has got.
func (b *Bench) detail(d string) {
	if b.cfg.Progress == nil {
		return
	}
	b.mu.Lock()
	s := b.last
	s.Elapsed += time.Since(b.lastAt)
	b.mu.Unlock()
	s.Detail = d
	b.cfg.Progress(s)
}

// checkProcs marks p dead, and returns why, when one of its processes has
// ended.
func (p *path) checkProcs() error {
	var dead error
	for _, proc := range p.procs() {
		if proc == nil {
			continue
		}
		if ended, how := proc.Exited(); ended {
			p.dead = errors.New(how)
			dead = p.dead
		}
	}
	return dead
}

// settle lets a round's flows end before the next round starts.
func (b *Bench) settle(ctx context.Context, w workload, p *path, targets *Targets) {
	sctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	if !targets.waitIdle(sctx, 0) && ctx.Err() == nil {
		b.cfg.Log.Debug("flows still open after a round", "workload", w.title, "path", p.Name, "open", targets.Open())
	}
}

// figures turns the values of w's rounds into its figures: each path's
// median, or why it has none.
func (w workload) figures(paths []*path, vals [][][]float64, why []string, rounds int) []Figure {
	var figs []Figure
	for f, spec := range w.figs {
		fig := Figure{ID: spec.id, Workload: w.group, Label: spec.label, Unit: spec.unit, Better: "higher"}
		if spec.lower {
			fig.Better = "lower"
		}
		for i, p := range paths {
			res := Result{Path: p.Name}
			na := ""
			if spec.applies != nil {
				na = spec.applies(p)
			}
			switch {
			case na != "":
				res.Error = na
			case len(vals[i][f]) < rounds && why[i] != "":
				res.Error = why[i]
			default:
				res.Rounds = vals[i][f]
				res.Value = Median(res.Rounds)
			}
			fig.Results = append(fig.Results, res)
		}
		if !spec.noRatio {
			fig.setRatios()
		}
		figs = append(figs, fig)
	}
	return figs
}

// plural returns "1 flow", "8 flows".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return thousands(n) + " " + what + "s"
}

// thousands writes n with a comma between thousands: 10,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
