package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// The workloads a run measures, and the figures each gives.

// figSpec is one figure a workload measures.
type figSpec struct {
	id, label, unit string
	lower           bool               // lower is better
	noRatio         bool               // a count or a percentage: no ratio
	applies         func(*path) string // why it is not measured on a path; nil: it is on all
}

// workload is one kind of round, measured on every path.
type workload struct {
	group  string // its name in Config.Workloads
	title  string // for the progress display
	figs   []figSpec
	noWarm bool               // no warm-up round
	skip   func(*path) string // why it is not measured on a path; nil: it is on all
	// run measures one round on one path: a value per figure (NaN where a
	// figure does not apply).
	run func(ctx context.Context, p *path) ([]float64, error)
	// close, when set, stops what run started for later rounds; Run calls
	// it once the workload is done, on every way out.
	close func()
}

// workloads lists what a run measures, in report order. note adds a line
// to the report, once.
func (b *Bench) workloads(target string, burstFlows, idleFlows int, note func(string, ...any)) []workload {
	cfg := b.cfg
	var ws []workload
	on := func(g string) bool { return slices.Contains(cfg.Workloads, g) }
	if on(WorkBulk) {
		ws = append(ws, b.bulkWorkloads(target)...)
	}
	if on(WorkLatency) {
		ws = append(ws, b.latencyWorkload(target))
	}
	if on(WorkSetup) {
		ws = append(ws, b.setupWorkload(target))
	}
	if on(WorkBurst) {
		ws = append(ws, burstWorkload(target, burstFlows, note))
	}
	if on(WorkIdle) {
		ws = append(ws, idleWorkload(target, idleFlows, note))
	}
	if on(WorkUDP) {
		ws = append(ws, b.udpWorkloads()...)
	}
	if on(WorkRTT) {
		ws = append(ws, b.rttWorkloads(target)...)
	}
	if on(WorkUTP) {
		ws = append(ws, b.utpWorkload(note))
	}
	return ws
}

// bulkWorkloads measures throughput: upload, then download, over each
// count of parallel flows.
func (b *Bench) bulkWorkloads(target string) []workload {
	cfg := b.cfg
	var ws []workload
	for _, up := range []bool{true, false} {
		for _, n := range cfg.BulkFlows {
			dir, fn, id := "download", bulkDownload, "down"
			if up {
				dir, fn, id = "upload", bulkUpload, "up"
			}
			label := fmt.Sprintf("bulk %s, %s", dir, plural(n, "flow"))
			ws = append(ws, workload{group: WorkBulk, title: label,
				figs: []figSpec{{id: fmt.Sprintf("bulk_%s_%d", id, n), label: label, unit: "MB/s"}},
				run: func(ctx context.Context, p *path) ([]float64, error) {
					v, err := fn(ctx, p.dial, target, n, cfg.BulkDuration)
					return []float64{v}, err
				}})
		}
	}
	return ws
}

// latencyWorkload measures request/response round trips on an open flow.
func (b *Bench) latencyWorkload(target string) workload {
	count := b.cfg.LatencyCount
	l := "request/response, 64 B on an open flow"
	return workload{group: WorkLatency, title: l,
		figs: []figSpec{
			{id: "latency_median", label: l + ": median", unit: "µs", lower: true},
			{id: "latency_p99", label: l + ": p99", unit: "µs", lower: true},
			{id: "latency_max", label: l + ": max", unit: "µs", lower: true},
		},
		run: func(ctx context.Context, p *path) ([]float64, error) {
			return latency(ctx, p.dial, target, count)
		}}
}

// setupWorkload measures opening flows one at a time.
func (b *Bench) setupWorkload(target string) workload {
	count := b.cfg.SetupCount
	l := "new flow + first byte, one at a time"
	return workload{group: WorkSetup, title: l,
		figs: []figSpec{
			{id: "setup_median", label: l + ": median", unit: "µs", lower: true},
			{id: "setup_p99", label: l + ": p99", unit: "µs", lower: true},
		},
		run: func(ctx context.Context, p *path) ([]float64, error) {
			return setupOneByOne(ctx, p.dial, target, count)
		}}
}

// burstWorkload measures opening n flows at the same moment.
func burstWorkload(target string, n int, note func(string, ...any)) workload {
	l := fmt.Sprintf("burst of %s flows at once", thousands(n))
	return workload{group: WorkBurst, title: l,
		figs: []figSpec{
			{id: "burst_all", label: l + ": all established", unit: "ms", lower: true},
			{id: "burst_median", label: l + ": median flow", unit: "ms", lower: true},
			{id: "burst_errors", label: l + ": errors", unit: "flows", lower: true, noRatio: true},
		},
		run: func(ctx context.Context, p *path) ([]float64, error) {
			v, failure, err := burst(ctx, p.dial, target, n)
			if failure != nil {
				note("%s: not every flow of the burst opened; the first failure: %v", p.Name, failure)
			}
			return v, err
		}}
}

// idleWorkload measures holding n flows open, and what each costs the
// processes bench started.
func idleWorkload(target string, n int, note func(string, ...any)) workload {
	mine := func(which string, has func(*path) bool) func(*path) string {
		return func(p *path) string {
			if has(p) {
				return ""
			}
			return "not measured: no " + which + " process that bench started"
		}
	}
	l := fmt.Sprintf("%s idle flows", thousands(n))
	return workload{group: WorkIdle, title: l, noWarm: true,
		figs: []figSpec{
			{id: "idle_flows", label: l + ": held open", unit: "flows", noRatio: true},
			{id: "idle_failed", label: l + ": failed to open", unit: "flows", lower: true, noRatio: true},
			{id: "idle_exit_kib", label: l + ": exit memory per flow", unit: "KiB", lower: true,
				applies: mine("exit", func(p *path) bool { return p.exit != nil })},
			{id: "idle_client_kib", label: l + ": client memory per flow", unit: "KiB", lower: true,
				applies: mine("client", func(p *path) bool { return p.client != nil })},
		},
		run: func(ctx context.Context, p *path) ([]float64, error) {
			return p.idleRound(ctx, target, n, note)
		}}
}

// idleRound runs one idle round on p: flows held, flows failed, then the
// memory per flow of its exit and its client (NaN for a process it has
// not). The first round takes the processes' memory before any idle flow.
func (p *path) idleRound(ctx context.Context, target string, n int, note func(string, ...any)) ([]float64, error) {
	var procs []*Proc
	var at []int
	for i, proc := range p.procs() {
		if proc != nil {
			procs, at = append(procs, proc), append(at, i)
		}
	}
	if p.rssBase == nil {
		for _, proc := range procs {
			rss, err := proc.RSS()
			if err != nil {
				return nil, err
			}
			p.rssBase = append(p.rssBase, rss)
		}
	}
	v, failure, err := idle(ctx, p.dial, target, n, procs, p.rssBase)
	if err != nil {
		return nil, err
	}
	if failure != nil {
		note("%s: not every idle flow opened; the first failure: %v", p.Name, failure)
	}
	out := []float64{v[0], v[1], math.NaN(), math.NaN()}
	for j, i := range at {
		out[2+i] = v[2+j]
	}
	return out, nil
}

// udpWorkloads measure datagrams through a UDP association, one workload
// per datagram size.
func (b *Bench) udpWorkloads() []workload {
	cfg := b.cfg
	var ws []workload
	for _, size := range cfg.UDPSizes {
		l := fmt.Sprintf("UDP ASSOCIATE, %s B datagrams", thousands(size))
		ws = append(ws, workload{group: WorkUDP, title: l,
			figs: []figSpec{
				{id: fmt.Sprintf("udp_%d_rate", size), label: l + ": echoed", unit: "dgram/s"},
				{id: fmt.Sprintf("udp_%d_loss", size), label: l + ": lost", unit: "%", lower: true, noRatio: true},
			},
			run: func(ctx context.Context, p *path) ([]float64, error) {
				return udpRound(ctx, p.udp, size, cfg.UDPDuration)
			}})
	}
	return ws
}

// rttWorkloads measure one flow each way over the delayed link.
func (b *Bench) rttWorkloads(target string) []workload {
	cfg := b.cfg
	var ws []workload
	for _, up := range []bool{false, true} {
		dir, fn, id := "download", bulkDownload, "down"
		if up {
			dir, fn, id = "upload", bulkUpload, "up"
		}
		label := fmt.Sprintf("1 flow over a link with %v RTT added: %s", cfg.RTT, dir)
		ws = append(ws, workload{group: WorkRTT, title: label,
			figs: []figSpec{{id: "rtt_" + id, label: label, unit: "MB/s"}},
			skip: func(p *path) string { return p.slowWhy },
			run: func(ctx context.Context, p *path) ([]float64, error) {
				v, err := fn(ctx, p.slow, target, 1, cfg.RTTDuration)
				return []float64{v}, err
			}})
	}
	// Round trips are long here: exchanges for the round's duration, not
	// the latency workload's count.
	label := fmt.Sprintf("request/response, 64 B on an open flow over a link with %v RTT added: median", cfg.RTT)
	ws = append(ws, workload{group: WorkRTT, title: label,
		figs: []figSpec{{id: "rtt_latency_median", label: label, unit: "ms", lower: true}},
		skip: func(p *path) string { return p.slowWhy },
		run: func(ctx context.Context, p *path) ([]float64, error) {
			return slowLatency(ctx, p.slow, target, cfg.LatencyCount, cfg.RTTDuration)
		}})
	return ws
}
