package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// The capacity workload: what one exit carries for many clients at once,
// as its operator sees it. Clients separate 'swarmvpn connect' processes,
// each with a state dir and so an identity of its own, all linked to the
// exit of the swarmvpn path; every flow of every client moves bulk data at
// the same moment, half of each client's flows downloading and half
// uploading, for a bounded time and a bounded byte count.

// CapacityConfig sizes the capacity workload.
type CapacityConfig struct {
	Clients  int           // client processes; default 50 (Quick: 4)
	Flows    int           // flows per client; default 20 (Quick: 4)
	Duration time.Duration // one round; default 5s (Quick: 500ms)
	// FlowBytes bounds what one flow moves in a round; default 1 GiB.
	FlowBytes int64
}

// Bounds on the capacity workload. bench's exit admits maxCapacityClients
// from one address (see startExit).
const (
	maxCapacityClients = 200
	maxCapacityFlows   = 5000 // clients × flows
	// capacityStarters is how many clients start at once.
	capacityStarters = 4
	// capacityBuffer is each flow's read and write size: a thousand flows
	// hold a thousand buffers.
	capacityBuffer = 32 << 10
	// capacityDrain bounds a flow's end after the round's time is up:
	// what a thousand flows hold in flight (socket buffers and stream
	// windows along the path) takes seconds to arrive, more on a busy
	// machine.
	capacityDrain = 2 * time.Minute
)

func (c CapacityConfig) withDefaults(quick bool) CapacityConfig {
	pick := func(v *int, normal, q int) {
		if *v == 0 {
			*v = normal
			if quick {
				*v = q
			}
		}
	}
	pick(&c.Clients, 50, 4)
	pick(&c.Flows, 20, 4)
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
		if quick {
			c.Duration = 500 * time.Millisecond
		}
	}
	if c.FlowBytes == 0 {
		c.FlowBytes = 1 << 30
	}
	return c
}

func (c CapacityConfig) validate() error {
	switch {
	case c.Clients < 1 || c.Clients > maxCapacityClients:
		return fmt.Errorf("capacity clients %d: want 1 to %d", c.Clients, maxCapacityClients)
	case c.Flows < 1 || c.Flows > maxCapacityFlows/c.Clients: // not the product, which may overflow
		return fmt.Errorf("capacity flows per client %d: want at least 1, and at most %d flows for all clients together", c.Flows, maxCapacityFlows)
	case c.Duration <= 0 || c.Duration > maxRoundTime:
		return fmt.Errorf("capacity round %v: want more than 0 and at most %v", c.Duration, maxRoundTime)
	case c.FlowBytes < 1 || c.FlowBytes > maxFlowBytes:
		return fmt.Errorf("capacity bytes per flow %d: want 1 to %d", c.FlowBytes, int64(maxFlowBytes))
	}
	return nil
}

// fleet is the capacity workload's clients, started at its first round.
type fleet struct {
	procs []*Proc
	socks []SOCKS5
	err   error // why the fleet could not start
}

// capacityWorkload measures the swarmvpn path's exit under cc.Clients
// clients × cc.Flows flows.
func (s *setup) capacityWorkload(note func(string, ...any), started time.Time) workload {
	cc := s.cfg.Capacity
	l := fmt.Sprintf("exit capacity, %d × %s", cc.Clients, plural(cc.Flows, "flow"))
	var f *fleet
	return workload{group: WorkCapacity, title: l,
		figs: []figSpec{
			{id: "capacity_mbps", label: l + ": all clients", unit: "MB/s"},
			{id: "capacity_client_min", label: l + ": slowest client", unit: "MB/s"},
			{id: "capacity_client_median", label: l + ": median client", unit: "MB/s"},
			{id: "capacity_failed", label: l + ": flows failed", unit: "flows", lower: true, noRatio: true},
			{id: "capacity_exit_cpu", label: l + ": exit CPU per GiB", unit: cpuUnit, lower: true,
				applies: func(*path) string { return cpuUnsupported() }},
			{id: "capacity_clients_cpu", label: l + ": clients' CPU per GiB, all together", unit: cpuUnit, lower: true,
				applies: func(*path) string { return cpuUnsupported() }},
		},
		skip: func(p *path) string {
			if p.Kind != Local {
				return "not measured: the capacity workload needs an exit that bench starts (the swarmvpn path)"
			}
			return ""
		},
		run: func(ctx context.Context, p *path) ([]float64, error) {
			if f == nil {
				f = s.startFleet(ctx, p, l, started, note)
			}
			if f.err != nil {
				return nil, f.err
			}
			v, failure, err := capacityRound(ctx, p.exit, f, s.targets.Addr, cc)
			if failure != nil {
				note("%s: not every flow of the capacity workload got through; the first failure: %v", p.Name, failure)
			}
			for _, proc := range f.procs {
				if ended, how := proc.Exited(); ended {
					return nil, errors.New(how)
				}
			}
			return v, err
		}}
}

// startFleet starts the capacity workload's clients, linked to p's exit,
// capacityStarters at a time, and waits until a flow gets through each. It
// shows its progress as it goes. Every process it starts is in s.procs,
// for Run to stop.
func (s *setup) startFleet(ctx context.Context, p *path, title string, started time.Time, note func(string, ...any)) *fleet {
	n := s.cfg.Capacity.Clients
	f := &fleet{procs: make([]*Proc, n), socks: make([]SOCKS5, n)}
	var (
		mu    sync.Mutex
		done  int
		first error
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	// bench holds both ends of every flow.
	want := uint64(2*n*s.cfg.Capacity.Flows + fdReserve)
	if limit, err := raiseFileLimit(want); err == nil && limit < want {
		note("capacity: the open-file limit is %d, below the %d its flows need: some will fail (raise it: ulimit -n %d)", limit, want, want)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	show := func() {
		if s.cfg.Progress != nil && (done%10 == 0 || done == n) {
			s.cfg.Progress(Status{Workload: fmt.Sprintf("%s: starting clients, %d of %d", title, done, n),
				Path: p.Name, Elapsed: time.Since(started)})
		}
	}
	show()
	for range min(capacityStarters, n) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				role := fmt.Sprintf("capacity-client-%d", i+1)
				proc, addr, err := startClient(ctx, role, s.cfg.Exe, filepath.Join(s.dir, role), p.exitAddr, s.wrap)
				if err == nil {
					mu.Lock()
					*s.procs = append(*s.procs, proc)
					mu.Unlock()
					f.procs[i], f.socks[i] = proc, SOCKS5{Addr: addr}
					err = waitReady(ctx, f.socks[i].Dial, s.targets.Addr)
				}
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("capacity client %d of %d: %w", i+1, n, err)
					cancel() // no use starting more
				}
				done++
				show()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	f.err = first
	if f.err == nil && ctx.Err() != nil {
		f.err = context.Cause(ctx)
	}
	return f
}

// capacityRound moves data over every flow of every client of f at once
// for cc.Duration, and returns: the MB/s of all clients together, those of
// the slowest client and of the median one, the flows that failed, and the
// CPU seconds per GiB carried of exit and of all clients together; and the
// first flow's failure, if one failed.
func capacityRound(ctx context.Context, exit *Proc, f *fleet, target string, cc CapacityConfig) (vals []float64, firstFailure, err error) {
	var carried atomic.Int64
	clientPIDs := make([]int, len(f.procs))
	for i, p := range f.procs {
		clientPIDs[i] = p.PID
	}
	cpu := cpuProcs{ProcSet: ProcSet{Client: clientPIDs, Exit: []int{exit.PID}}}
	measureCPU := cpuUnsupported() == ""
	var c0, e0 float64
	if measureCPU {
		if c0, e0, err = cpu.sample(); err != nil {
			return nil, nil, err
		}
	}

	type flow struct {
		client   int
		conn     net.Conn
		upload   bool
		bytes    int64
		finished time.Time
		err      error
	}
	var flows []*flow
	for c := range f.socks {
		for j := range cc.Flows {
			flows = append(flows, &flow{client: c, upload: j%2 == 1})
		}
	}
	// Open every flow first, then start them all at one moment.
	var wg sync.WaitGroup
	for _, fl := range flows {
		wg.Go(func() {
			op := byte(opDownload)
			if fl.upload {
				op = opUpload
			}
			fl.conn, fl.err = openFlow(ctx, countingDial(f.socks[fl.client].Dial, &carried), target, op)
		})
	}
	wg.Wait()
	var conns []net.Conn
	for _, fl := range flows {
		if fl.conn != nil {
			conns = append(conns, fl.conn)
		}
	}
	defer closeConns(conns)
	defer abortOnDone(ctx, conns)()
	if len(conns) == 0 {
		return nil, nil, fmt.Errorf("no flow of the capacity workload opened: %w", flows[0].err)
	}
	upBuf := make([]byte, capacityBuffer) // only read from: shared
	start := time.Now()
	end := start.Add(cc.Duration)
	for _, fl := range flows {
		if fl.conn == nil {
			continue
		}
		wg.Go(func() {
			if fl.upload {
				fl.bytes, fl.err = capacityUpload(fl.conn, upBuf, end, cc.FlowBytes)
			} else {
				fl.bytes, fl.err = capacityDownload(fl.conn, end, cc.FlowBytes)
			}
			fl.finished = time.Now()
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if measureCPU {
		c1, e1, err := cpu.sample()
		if err != nil {
			return nil, nil, err
		}
		c0, e0 = c1-c0, e1-e0
	}

	perClient := make([]int64, len(f.socks))
	lastOf := make([]time.Time, len(f.socks))
	var total int64
	last := start
	failed := 0
	for _, fl := range flows {
		if fl.err != nil {
			failed++
			if firstFailure == nil {
				firstFailure = fl.err
			}
			continue
		}
		total += fl.bytes
		perClient[fl.client] += fl.bytes
		last = latest(last, fl.finished)
		lastOf[fl.client] = latest(lastOf[fl.client], fl.finished)
	}
	if total == 0 {
		return nil, nil, fmt.Errorf("no flow of the capacity workload carried a byte: %w", firstFailure)
	}
	rates := make([]float64, len(perClient))
	for i, b := range perClient {
		if b > 0 {
			rates[i] = float64(b) / lastOf[i].Sub(start).Seconds() / 1e6
		}
	}
	vals = []float64{float64(total) / last.Sub(start).Seconds() / 1e6, minOf(rates), Median(rates), float64(failed),
		math.NaN(), math.NaN()}
	if gib := float64(carried.Load()) / (1 << 30); measureCPU && gib > 0 {
		vals[4], vals[5] = e0/gib, c0/gib
	}
	return vals, firstFailure, nil
}

// capacityUpload sends on c until end or limit, half-closes it and
// returns what the sink counted.
func capacityUpload(c net.Conn, buf []byte, end time.Time, limit int64) (int64, error) {
	c.SetWriteDeadline(end)
	var sent int64
	for sent < limit && time.Now().Before(end) {
		w, err := c.Write(buf[:min(int64(len(buf)), limit-sent)])
		sent += int64(w)
		if isTimeout(err) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("upload: %w", err)
		}
	}
	c.SetWriteDeadline(time.Time{})
	if err := closeWrite(c); err != nil {
		return 0, err
	}
	c.SetReadDeadline(time.Now().Add(capacityDrain))
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, fmt.Errorf("no byte count from the sink after the upload: %w", err)
	}
	if got := int64(binary.BigEndian.Uint64(b[:])); got != sent {
		return 0, fmt.Errorf("upload: the sink counted %d bytes, %d were sent", got, sent)
	}
	return sent, nil
}

// capacityDownload asks for limit bytes on c and reads until end, then
// half-closes it and reads what is still in flight, to the end of the
// flow. It returns all it read.
func capacityDownload(c net.Conn, end time.Time, limit int64) (int64, error) {
	if _, err := c.Write(binary.BigEndian.AppendUint64(nil, uint64(limit))); err != nil {
		return 0, fmt.Errorf("download request: %w", err)
	}
	buf := make([]byte, capacityBuffer)
	var got int64
	c.SetReadDeadline(end)
	for {
		r, err := c.Read(buf)
		got += int64(r)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) && got == limit {
			return got, nil
		}
		if !isTimeout(err) {
			return 0, fmt.Errorf("download: %w", err)
		}
		break
	}
	if err := closeWrite(c); err != nil {
		return 0, err
	}
	c.SetReadDeadline(time.Now().Add(capacityDrain))
	n, err := io.CopyBuffer(writerOnly{io.Discard}, readerOnly{c}, buf)
	if err != nil {
		return 0, fmt.Errorf("download: the flow did not end after the half-close: %w", err)
	}
	return got + n, nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func minOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	m := xs[0]
	for _, x := range xs[1:] {
		m = min(m, x)
	}
	return m
}
