package bench

import (
	"context"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWithCPU measures a round that carries 64 MiB over a flow and burns
// CPU, with this process as both "client" and "exit", and checks the
// figures against getrusage and the bytes carried.
func TestWithCPU(t *testing.T) {
	rusage := func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	const carried = 64 << 20
	var spent float64
	w := workload{group: WorkBulk, title: "bulk upload, 1 flow",
		figs: []figSpec{{id: "bulk_up_1", label: "bulk upload, 1 flow", unit: "MB/s"}},
		run: func(ctx context.Context, p *path) ([]float64, error) {
			r0 := rusage()
			c, err := p.dial(ctx, "target")
			if err != nil {
				return nil, err
			}
			defer c.Close()
			buf := make([]byte, 1<<20)
			for range carried / len(buf) {
				if _, err := c.Write(buf); err != nil {
					return nil, err
				}
			}
			x := 1.0
			for deadline := time.Now().Add(10 * time.Second); rusage()-r0 < 0.3 && time.Now().Before(deadline); {
				for range 100_000 {
					x = x*1.0000001 + 1e-9
				}
			}
			spent = rusage() - r0
			return []float64{x}, nil
		}}
	ws := addCPU([]workload{w})
	if got := len(ws[0].figs); got != 4 {
		t.Fatalf("%d figures, want the workload's and 3 of CPU", got)
	}
	for i, id := range []string{"bulk_up_1", "bulk_up_1_cpu", "bulk_up_1_cpu_client", "bulk_up_1_cpu_exit"} {
		if ws[0].figs[i].id != id || ws[0].figs[i].unit != "MB/s" && (ws[0].figs[i].unit != cpuUnit || !ws[0].figs[i].lower) {
			t.Errorf("figure %d: %+v, want %s", i, ws[0].figs[i], id)
		}
	}

	self := os.Getpid()
	p := &path{cpu: cpuProcs{ProcSet: ProcSet{Client: []int{self}, Exit: []int{self}}},
		dial: func(context.Context, string) (net.Conn, error) {
			a, b := net.Pipe()
			go io.Copy(io.Discard, b) // ends when a closes
			return halfCloser{a}, nil
		}}
	v, err := ws[0].run(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	want := spent / (float64(carried) / (1 << 30))
	// Both readings round to 1/100 s, and the round did a little more
	// than what it timed. Client and exit are this process read one
	// after the other, so a clock tick can fall between the two.
	slack := 0.05 / (float64(carried) / (1 << 30))
	if len(v) != 4 || math.Abs(v[2]-want) > slack || math.Abs(v[2]-v[3]) > slack || math.Abs(v[1]-v[2]-v[3]) > 1e-9 {
		t.Errorf("values %v; want client = exit ≈ %.2f s/GiB (±%.2f), their sum first", v, want, slack)
	}

	// A path without processes gets NaN for each CPU figure, and the
	// figures say why.
	direct := &path{Path: Path{Name: "direct"}, cpu: cpuProcs{why: "not measured: none"}, dial: p.dial}
	if v, err := ws[0].run(t.Context(), direct); err != nil || len(v) != 4 || !math.IsNaN(v[1]) || !math.IsNaN(v[3]) {
		t.Errorf("direct: %v, %v; want 3 NaN", v, err)
	}
	figs := ws[0].figures([]*path{p, direct}, [][][]float64{{{1}, {2}, {1}, {1}}, {{1}, {}, {}, {}}}, []string{"", ""}, 1)
	for _, f := range figs[1:] {
		if r := f.Results[1]; !strings.Contains(r.Error, "not measured") {
			t.Errorf("%s on direct: %+v, want not measured", f.ID, r)
		}
	}
}

// halfCloser is a net.Pipe end that can be half-closed, as a flow.
type halfCloser struct{ net.Conn }

func (h halfCloser) CloseWrite() error { return h.Close() }

// TestCPUSecondsSelf reads this process's /proc/self/stat after it has
// spent some CPU time and checks it against getrusage.
func TestCPUSecondsSelf(t *testing.T) {
	rusage := func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	// Spend at least 0.3 s of CPU, bounded in time.
	deadline := time.Now().Add(10 * time.Second)
	x := 1.0
	for rusage() < 0.3 && time.Now().Before(deadline) {
		for range 1_000_000 {
			x = x*1.0000001 + 1e-9
		}
	}
	before := rusage()
	got, err := cpuSeconds([]int{os.Getpid()})
	after := rusage()
	if err != nil {
		t.Fatal(err)
	}
	// The kernel reports in 1/100 s ticks: allow two, and what passed
	// between the readings.
	if got < before-0.02 || got > after+0.02 {
		t.Errorf("CPU time from /proc/self/stat %.3f s; getrusage says %.3f to %.3f s (x=%g)", got, before, after, x)
	}
	if _, err := cpuSeconds([]int{os.Getpid(), 1 << 30}); err == nil {
		t.Error("no error for a process that does not exist")
	}
}
