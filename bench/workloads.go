package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Each function here measures one round of one workload over one path.
// Every loop is bounded in count and in time.

// dialFunc opens a flow to target through a path.
type dialFunc func(ctx context.Context, target string) (net.Conn, error)

const (
	// flowTimeout bounds one flow's setup and first byte.
	flowTimeout = 15 * time.Second
	// drainTimeout bounds waiting for a sink's count once a flow has sent
	// all it will.
	drainTimeout = 30 * time.Second
	// exchangeTimeLimit bounds a latency or one-at-a-time setup round.
	exchangeTimeLimit = 30 * time.Second
	// idleTimeLimit bounds opening the idle flows.
	idleTimeLimit = 2 * time.Minute
	// idleOpeners is how many idle flows are being opened at once.
	idleOpeners = 64
	// bulkWrite is the size of each write of a bulk flow.
	bulkWrite = 128 << 10
)

// openFlow opens a flow, sends op and, for an echo, checks one byte round
// trip, so that the flow is known to reach the target.
func openFlow(ctx context.Context, dial dialFunc, target string, op byte) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, flowTimeout)
	defer cancel()
	c, err := dial(ctx, target)
	if err != nil {
		return nil, err
	}
	if op != opEcho {
		if _, err := c.Write([]byte{op}); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	b := []byte{opEcho, 42}
	if _, err := c.Write(b); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.ReadFull(c, b[:1]); err != nil {
		c.Close()
		return nil, fmt.Errorf("first byte: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// openFlows opens n flows at once, or none.
func openFlows(ctx context.Context, dial dialFunc, target string, n int, op byte) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { conns[i], errs[i] = openFlow(ctx, dial, target, op) })
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		closeConns(conns)
		return nil, fmt.Errorf("open a flow: %w", err)
	}
	return conns, nil
}

func closeConns(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// abortOnDone closes conns when ctx ends, so that a cancelled run never
// waits on the network; call the result when done.
func abortOnDone(ctx context.Context, conns []net.Conn) func() bool {
	return context.AfterFunc(ctx, func() { closeConns(conns) })
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// bulkUpload sends as much as it can over n flows for dur, then half-closes
// each and waits for the sink's count. It returns MB/s: bytes the sink
// counted over the time from start to the last count.
func bulkUpload(ctx context.Context, dial dialFunc, target string, n int, dur time.Duration) (float64, error) {
	conns, err := openFlows(ctx, dial, target, n, opUpload)
	if err != nil {
		return 0, err
	}
	defer closeConns(conns)
	defer abortOnDone(ctx, conns)()
	buf := make([]byte, bulkWrite)
	counted := make([]int64, n)
	finished := make([]time.Time, n)
	errs := make([]error, n)
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			c.SetWriteDeadline(end)
			var sent int64
			for sent < maxFlowBytes && time.Now().Before(end) {
				w, err := c.Write(buf)
				sent += int64(w)
				if isTimeout(err) {
					break
				}
				if err != nil {
					errs[i] = fmt.Errorf("upload: %w", err)
					return
				}
			}
			c.SetWriteDeadline(time.Time{})
			if err := closeWrite(c); err != nil {
				errs[i] = err
				return
			}
			c.SetReadDeadline(time.Now().Add(drainTimeout))
			var b [8]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				errs[i] = fmt.Errorf("no byte count from the sink after the upload (%w): does the path carry half-close?", err)
				return
			}
			if got := int64(binary.BigEndian.Uint64(b[:])); got != sent {
				errs[i] = fmt.Errorf("upload: the sink counted %d bytes, %d were sent", got, sent)
				return
			}
			counted[i], finished[i] = sent, time.Now()
		})
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return 0, err
	}
	var total int64
	last := start
	for i := range n {
		total += counted[i]
		if finished[i].After(last) {
			last = finished[i]
		}
	}
	return float64(total) / last.Sub(start).Seconds() / 1e6, nil
}

func closeWrite(c net.Conn) error {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return errors.New("the flow cannot half-close")
	}
	if err := cw.CloseWrite(); err != nil {
		return fmt.Errorf("half-close: %w", err)
	}
	return nil
}

// bulkDownload asks the target for a stream on each of n flows at once and
// reads for dur. It returns MB/s: bytes received in that time.
func bulkDownload(ctx context.Context, dial dialFunc, target string, n int, dur time.Duration) (float64, error) {
	conns, err := openFlows(ctx, dial, target, n, opDownload)
	if err != nil {
		return 0, err
	}
	defer closeConns(conns)
	defer abortOnDone(ctx, conns)()
	received := make([]int64, n)
	errs := make([]error, n)
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			if _, err := c.Write(binary.BigEndian.AppendUint64(nil, maxFlowBytes)); err != nil {
				errs[i] = fmt.Errorf("download request: %w", err)
				return
			}
			c.SetReadDeadline(end)
			buf := make([]byte, bulkWrite)
			for {
				r, err := c.Read(buf)
				received[i] += int64(r)
				if err == nil {
					continue
				}
				if !isTimeout(err) && !(errors.Is(err, io.EOF) && received[i] == maxFlowBytes) {
					errs[i] = fmt.Errorf("download: %w", err)
					return
				}
				break
			}
			// Stop the sender by half-closing, and read what is in flight
			// to the end: closing with bytes unread would reset the flow
			// and leave the far end of some paths blocked.
			if err := closeWrite(c); err != nil {
				errs[i] = err
				return
			}
			c.SetReadDeadline(time.Now().Add(drainTimeout))
			if _, err := io.CopyBuffer(writerOnly{io.Discard}, readerOnly{c}, buf); err != nil {
				errs[i] = fmt.Errorf("download: the flow did not end after the half-close (%w): does the path carry half-close?", err)
			}
		})
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return 0, err
	}
	var total int64
	for _, r := range received {
		total += r
	}
	return float64(total) / dur.Seconds() / 1e6, nil
}

// latency exchanges 64-byte messages with the echo target on one open flow,
// one at a time, and returns the median, 99th percentile and largest round
// trip in µs.
func latency(ctx context.Context, dial dialFunc, target string, count int) ([]float64, error) {
	samples, err := exchanges(ctx, dial, target, 20, count, exchangeTimeLimit)
	if err != nil {
		return nil, err
	}
	return []float64{Median(samples), Percentile(samples, 99), Max(samples)}, nil
}

// slowExchanges is the least a long-link request/response round measures,
// however long its round trips.
const slowExchanges = 5

// slowLatency exchanges 64-byte messages on one open flow over a long link
// for dur, or until it has count of them (at least slowExchanges, within
// exchangeTimeLimit), and returns the median round trip in ms.
func slowLatency(ctx context.Context, dial dialFunc, target string, count int, dur time.Duration) ([]float64, error) {
	samples, err := exchanges(ctx, dial, target, 2, count, dur)
	if err != nil {
		return nil, err
	}
	return []float64{Median(samples) / 1e3}, nil
}

// exchanges opens a flow to the echo target and exchanges 64-byte
// messages on it, one at a time: settle unmeasured, then up to count
// measured, which it returns in µs. It stops measuring after limit, once
// it has at least slowExchanges (or count, if fewer), and when
// exchangeTimeLimit is up.
func exchanges(ctx context.Context, dial dialFunc, target string, settle, count int, limit time.Duration) ([]float64, error) {
	c, err := openFlow(ctx, dial, target, opEcho)
	if err != nil {
		return nil, fmt.Errorf("open a flow: %w", err)
	}
	defer c.Close()
	defer abortOnDone(ctx, []net.Conn{c})()
	start := time.Now()
	c.SetDeadline(start.Add(exchangeTimeLimit))
	msg, got := make([]byte, 64), make([]byte, 64)
	exchange := func() error {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err := io.ReadFull(c, got)
		return err
	}
	for range settle { // let the flow settle
		if err := exchange(); err != nil {
			return nil, fmt.Errorf("echo: %w", err)
		}
	}
	least := min(count, slowExchanges)
	measured := time.Now()
	samples := make([]float64, 0, count)
	for len(samples) < count && (len(samples) < least || time.Since(measured) < limit) {
		t0 := time.Now()
		if err := exchange(); err != nil {
			if isTimeout(err) && len(samples) > 0 {
				break // the round's time is up: keep what it measured
			}
			return nil, fmt.Errorf("echo: %w", err)
		}
		samples = append(samples, micros(time.Since(t0)))
	}
	return samples, nil
}

// setupOneByOne opens count flows one after another, each until its first
// byte has come back, and returns the median and 99th percentile time in
// µs.
func setupOneByOne(ctx context.Context, dial dialFunc, target string, count int) ([]float64, error) {
	start := time.Now()
	samples := make([]float64, 0, count)
	for len(samples) < count && time.Since(start) < exchangeTimeLimit {
		t0 := time.Now()
		c, err := openFlow(ctx, dial, target, opEcho)
		if err != nil {
			return nil, fmt.Errorf("flow %d: %w", len(samples)+1, err)
		}
		samples = append(samples, micros(time.Since(t0)))
		c.Close()
	}
	return []float64{Median(samples), Percentile(samples, 99)}, nil
}

// burst opens n flows at the same moment, each until its first byte has
// come back, and returns the time until all had (ms), each flow's median
// (ms) and how many failed, with the first failure.
func burst(ctx context.Context, dial dialFunc, target string, n int) (vals []float64, firstFailure, err error) {
	conns := make([]net.Conn, n)
	times := make([]float64, n)
	errs := make([]error, n)
	go1 := make(chan struct{})
	var t0 time.Time
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-go1
			conns[i], errs[i] = openFlow(ctx, dial, target, opEcho)
			times[i] = millis(time.Since(t0))
		})
	}
	t0 = time.Now()
	close(go1)
	wg.Wait()
	closeConns(conns)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var ok []float64
	failed := 0
	for i := range n {
		if errs[i] != nil {
			failed++
		} else {
			ok = append(ok, times[i])
		}
	}
	if len(ok) == 0 {
		return nil, nil, fmt.Errorf("every flow of the burst failed: %w", firstError(errs))
	}
	return []float64{Max(ok), Median(ok), float64(failed)}, firstError(errs), nil
}

// idle opens n flows, idleOpeners at a time, and holds them all open; then
// it reads the resident memory of procs and returns the flows held, those
// that failed and, for each proc, its growth over base (its memory before
// the first idle round) per flow held, in KiB; and the first failure.
func idle(ctx context.Context, dial dialFunc, target string, n int, procs []*Proc, base []int64) (vals []float64, firstFailure, err error) {
	ctx, cancel := context.WithTimeout(ctx, idleTimeLimit)
	defer cancel()
	var (
		mu    sync.Mutex
		conns = make([]net.Conn, 0, n)
		first error
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	defer func() { mu.Lock(); closeConns(conns); mu.Unlock() }()
	for range min(idleOpeners, n) {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				c, err := openFlow(ctx, dial, target, opEcho)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if c != nil {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && len(conns) < n {
		return nil, nil, fmt.Errorf("opening %d idle flows: %d open after %v: %w", n, len(conns), idleTimeLimit, err)
	}
	held := len(conns)
	if held == 0 {
		return nil, nil, fmt.Errorf("no idle flow opened: %w", first)
	}
	out := []float64{float64(held), float64(n - held)}
	for i, p := range procs {
		rss, err := p.RSS()
		if err != nil {
			return nil, nil, err
		}
		out = append(out, float64(rss-base[i])/float64(held)/1024)
	}
	return out, first, nil
}

// udpWindow is how many datagrams may be in flight; udpStall is how long
// the sender waits for an echo before it counts those in flight as lost
// and goes on.
const (
	udpWindow     = 128
	udpStall      = 20 * time.Millisecond
	udpDrain      = 300 * time.Millisecond
	maxDatagrams  = 10_000_000
	seqProbe      = math.MaxUint64
	udpProbeTries = 40
)

// udpRound sends datagrams of size bytes to the echo target for dur,
// keeping at most udpWindow in flight, and returns the datagrams echoed per
// second and the percentage lost.
func udpRound(ctx context.Context, open func(context.Context) (packetPath, error), size int, dur time.Duration) ([]float64, error) {
	octx, cancel := context.WithTimeout(ctx, flowTimeout)
	pc, err := open(octx)
	cancel()
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()

	msg := make([]byte, size)
	buf := make([]byte, 65536)
	if err := udpProbe(pc, msg, buf); err != nil {
		return nil, err
	}
	u := &udpWindowed{pc: pc, size: size, progress: make(chan struct{}, 1), timer: time.NewTimer(time.Hour)}
	defer u.timer.Stop()
	u.start = time.Now()
	pc.SetReadDeadline(time.Time{})
	var recvErr error
	var wg sync.WaitGroup
	wg.Go(func() { recvErr = u.receive(ctx, buf) })
	sendErr := u.send(ctx, msg, u.start.Add(dur))
	u.drain(ctx)
	pc.SetReadDeadline(time.Now())
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if recvErr != nil {
		return nil, fmt.Errorf("receive: %w", recvErr)
	}
	got, total := u.received.Load(), u.sent.Load()
	if got == 0 {
		if sendErr != nil {
			return nil, fmt.Errorf("send: %w", sendErr)
		}
		return nil, fmt.Errorf("none of %d datagrams came back", total)
	}
	elapsed := time.Duration(u.lastRecv.Load())
	return []float64{float64(got) / elapsed.Seconds(), 100 * float64(total-got) / float64(total)}, nil
}

// udpProbe sends probes until one comes back: the association may take a
// moment to reach the exit.
func udpProbe(pc packetPath, msg, buf []byte) error {
	binary.BigEndian.PutUint64(msg, seqProbe)
	for try := 0; ; try++ {
		if try == udpProbeTries {
			return fmt.Errorf("no datagram came back in %v", udpProbeTries*50*time.Millisecond)
		}
		if err := pc.Send(msg); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if p, err := pc.Recv(buf); err == nil && len(p) == len(msg) {
			return nil
		} else if err != nil && !isTimeout(err) {
			return fmt.Errorf("receive: %w", err)
		}
	}
}

// udpWindowed is one UDP round's sender and receiver. The sender waits
// when udpWindow datagrams are in flight; the receiver wakes it once half
// of them are back (or, draining, at each echo), so that neither wakes the
// other per datagram.
type udpWindowed struct {
	pc    packetPath
	size  int
	start time.Time

	sent, received, forgiven atomic.Int64
	lastRecv                 atomic.Int64 // ns since start
	waiting, draining        atomic.Bool
	progress                 chan struct{}
	timer                    *time.Timer // the sender's
}

func (u *udpWindowed) inFlight() int64 {
	return u.sent.Load() - u.received.Load() - u.forgiven.Load()
}

// receive counts echoes until the socket is closed or its deadline passes;
// it returns an error only when that was not the end of the round.
func (u *udpWindowed) receive(ctx context.Context, buf []byte) error {
	for {
		p, err := u.pc.Recv(buf)
		if err != nil {
			if !isTimeout(err) && ctx.Err() == nil {
				return err
			}
			return nil
		}
		if len(p) != u.size || binary.BigEndian.Uint64(p) == seqProbe {
			continue
		}
		u.received.Add(1)
		u.lastRecv.Store(int64(time.Since(u.start)))
		if u.waiting.Load() && (u.draining.Load() || u.inFlight() <= udpWindow/2) {
			select {
			case u.progress <- struct{}{}:
			default:
			}
		}
	}
}

// wait waits up to d for the receiver's signal, or for ready to hold; it
// reports whether either came.
func (u *udpWindowed) wait(ctx context.Context, d time.Duration, ready func() bool) bool {
	u.waiting.Store(true)
	defer u.waiting.Store(false)
	if ready() { // an echo that came before waiting was set sent no signal
		return true
	}
	u.timer.Reset(d)
	defer u.timer.Stop()
	select {
	case <-u.progress:
		return true
	case <-u.timer.C:
	case <-ctx.Done():
	}
	return false
}

// send sends numbered datagrams until end, keeping the window, and returns
// the last error a send gave.
func (u *udpWindowed) send(ctx context.Context, msg []byte, end time.Time) error {
	var sendErr error
	for u.sent.Load() < maxDatagrams && time.Now().Before(end) && ctx.Err() == nil {
		if u.inFlight() >= udpWindow {
			if !u.wait(ctx, udpStall, func() bool { return u.inFlight() <= udpWindow/2 }) {
				u.forgiven.Store(u.sent.Load() - u.received.Load()) // count them lost, go on
			}
			continue
		}
		binary.BigEndian.PutUint64(msg, uint64(u.sent.Load()))
		if err := u.pc.Send(msg); err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			// A full socket buffer (ENOBUFS): the datagram is lost like any other.
			sendErr = err
		}
		u.sent.Add(1)
	}
	return sendErr
}

// drain waits for the last echoes: until all are back or none came for
// udpDrain.
func (u *udpWindowed) drain(ctx context.Context) {
	u.draining.Store(true)
	allBack := func() bool { return u.received.Load() >= u.sent.Load() }
	for !allBack() && ctx.Err() == nil && u.wait(ctx, udpDrain, allBack) {
	}
}
