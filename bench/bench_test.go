package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunInProcess runs every workload, small, over swarmvpn's path in
// this process (as a SOCKS5 proxy) and the direct path, and checks that
// each figure has a value, or on a path where it cannot, a reason.
func TestRunInProcess(t *testing.T) {
	tp := testnet.Start(t, testnet.Options{})
	var statuses []Status
	b, err := New(Config{
		Paths: []Path{
			{Name: "tunnel", Kind: Proxy, SOCKS: SOCKS5{Addr: tp.SOCKS}},
			{Name: "direct", Kind: Direct},
		},
		Quick: true, Rounds: 2,
		BulkDuration: 50 * time.Millisecond, BulkFlows: []int{1, 4},
		LatencyCount: 50, SetupCount: 5, BurstCount: 50, IdleFlows: 50,
		UDPDuration: 50 * time.Millisecond,
		RTT:         10 * time.Millisecond, RTTDuration: 100 * time.Millisecond,
		Progress: func(s Status) { statuses = append(statuses, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := b.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	wantIDs := []string{"bulk_up_1", "bulk_up_4", "bulk_down_1", "bulk_down_4", "latency_median", "latency_p99",
		"latency_max", "setup_median", "setup_p99", "burst_all", "burst_median", "burst_errors", "idle_flows", "idle_failed",
		"idle_exit_kib", "idle_client_kib", "udp_100_rate", "udp_100_loss", "udp_1400_rate", "udp_1400_loss",
		"rtt_down", "rtt_up", "rtt_latency_median",
		"bulk_up_1_cpu", "bulk_up_1_cpu_client", "bulk_up_1_cpu_exit", "bulk_up_4_cpu",
		"bulk_down_1_cpu", "bulk_down_1_cpu_client", "bulk_down_1_cpu_exit", "bulk_down_4_cpu",
		"udp_100_cpu", "udp_100_cpu_client", "udp_100_cpu_exit", "udp_1400_cpu", "udp_1400_cpu_client", "udp_1400_cpu_exit"}
	if len(rep.Figures) != len(wantIDs) {
		t.Errorf("%d figures, want %d", len(rep.Figures), len(wantIDs))
	}
	for _, id := range wantIDs {
		f := rep.Figure(id)
		if f == nil {
			t.Errorf("no figure %s", id)
			continue
		}
		for _, r := range f.Results {
			notHere := strings.HasSuffix(id, "_kib") || // no processes of bench's
				strings.Contains(id, "_cpu") || // the proxy is this process; direct has none
				r.Path == "tunnel" && strings.HasPrefix(id, "rtt_") // no delayed link given
			switch {
			case notHere && !strings.Contains(r.Error, "not measured"):
				t.Errorf("%s on %s: value %v, error %q; want it not measured", id, r.Path, r.Value, r.Error)
			case notHere:
			case r.Error != "":
				t.Errorf("%s on %s: %s", id, r.Path, r.Error)
			case len(r.Rounds) != 2:
				t.Errorf("%s on %s: %d rounds, want 2", id, r.Path, len(r.Rounds))
			case r.Value <= 0 && !zeroOK(f), math.IsNaN(r.Value):
				t.Errorf("%s on %s: value %v", id, r.Path, r.Value)
			}
		}
	}
	if f := rep.Figure("bulk_up_1"); f != nil && f.Results[1].Ratio == 0 {
		t.Errorf("bulk_up_1: no ratio for the second path")
	}
	if f := rep.Figure("burst_errors"); f != nil && f.Results[0].Value != 0 {
		t.Errorf("burst through the tunnel: %v errors", f.Results[0].Value)
	}
	// Over the long link each exchange waits at least the added RTT: the
	// figure is taken over the delayed link, not loopback.
	if f := rep.Figure("rtt_latency_median"); f != nil && f.Results[1].Value < 10 {
		t.Errorf("request/response over a link with 10ms added: %v ms on direct, want at least 10", f.Results[1].Value)
	}
	if rep.Figure("idle_flows").Results[0].Value != 50 {
		t.Errorf("idle flows held: %v, want 50", rep.Figure("idle_flows").Results[0].Value)
	}
	if len(statuses) == 0 {
		t.Error("no progress reported")
	}

	// The JSON document round-trips; the table names every figure.
	doc, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(doc, &back); err != nil || len(back.Figures) != len(rep.Figures) {
		t.Fatalf("JSON round trip: %v, %d figures", err, len(back.Figures))
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Figures {
		if !strings.Contains(table.String(), f.Label) {
			t.Errorf("table lacks %q:\n%s", f.Label, table.String())
		}
	}
	if !strings.Contains(table.String(), "tunnel: not measured") {
		t.Errorf("table lacks the reason for a missing value:\n%s", table.String())
	}
}

// zeroOK reports whether 0 is a normal value of f: a loss, or a count of
// failures.
func zeroOK(f *Figure) bool { return f.Unit == "%" || f.Unit == "flows" && f.Better == "lower" }

func TestNewValidates(t *testing.T) {
	direct := []Path{{Name: "direct", Kind: Direct}}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no paths", Config{}, "nothing to measure"},
		{"same name", Config{Paths: []Path{{Name: "a", Kind: Direct}, {Name: "a", Kind: Direct}}}, "named \"a\""},
		{"no binary", Config{Paths: []Path{{Name: "s", Kind: Local}}}, "no swarmvpn binary"},
		{"bad socks", Config{Paths: []Path{{Name: "p", Kind: Proxy, SOCKS: SOCKS5{Addr: "nowhere"}}}}, "HOST:PORT"},
		{"rtt without delay", Config{Paths: direct, Workloads: []string{WorkRTT}}, "--rtt"},
		{"unknown workload", Config{Paths: direct, Workloads: []string{"speed"}}, "unknown workload"},
		{"target host name", Config{Paths: direct, TargetHost: "example.org"}, "IP address"},
		{"huge burst", Config{Paths: direct, BurstCount: 2_000_000}, "count"},
		{"tiny datagrams", Config{Paths: direct, UDPSizes: []int{4}}, "datagram size"},
		{"many capacity clients", Config{Paths: direct, Capacity: CapacityConfig{Clients: 500}}, "capacity clients 500"},
		{"many capacity flows", Config{Paths: direct, Capacity: CapacityConfig{Clients: 100, Flows: 100}}, "capacity flows"},
		{"capacity flows past int", Config{Paths: direct, Capacity: CapacityConfig{Clients: 200, Flows: math.MaxInt/100 + 1}}, "capacity flows"},
		{"pid 0", Config{Paths: []Path{{Name: "p", Kind: Proxy, SOCKS: SOCKS5{Addr: "127.0.0.1:1"},
			PIDs: &ProcSet{Client: []int{12}, Exit: []int{0}}}}}, "process ID 0"},
		{"no client pid", Config{Paths: []Path{{Name: "p", Kind: Proxy, SOCKS: SOCKS5{Addr: "127.0.0.1:1"},
			PIDs: &ProcSet{Exit: []int{12}}}}}, "no client-side PID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{Paths: direct}); err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
}

func TestProgress(t *testing.T) {
	var tty, plain bytes.Buffer
	pt, pp := NewProgress(&tty, true), NewProgress(&plain, false)
	for _, s := range []Status{
		{Workload: "bulk upload, 1 flow", Path: "swarmvpn", Round: 0, Rounds: 3},
		{Workload: "bulk upload, 1 flow", Path: "direct", Round: 1, Rounds: 3},
		{Workload: "latency", Path: "swarmvpn", Round: 1, Rounds: 3},
	} {
		pt.Update(s)
		pp.Update(s)
	}
	// A long round's progress: on a terminal each time; in a log once
	// every plainEvery.
	for _, d := range []time.Duration{1, 2, 12} {
		s := Status{Workload: "latency", Path: "swarmvpn", Round: 1, Rounds: 3, Elapsed: d * time.Second, Detail: fmt.Sprintf("%d%%", d)}
		pt.Update(s)
		pp.Update(s)
	}
	pt.Done()
	if got := strings.Count(tty.String(), "\r\x1b[K"); got != 7 {
		t.Errorf("terminal: %d line rewrites, want 7: %q", got, tty.String())
	}
	if strings.Contains(tty.String(), "\n") || !strings.Contains(tty.String(), "round 1/3") {
		t.Errorf("terminal output %q", tty.String())
	}
	if lines := strings.Split(strings.TrimSpace(plain.String()), "\n"); len(lines) != 3 || strings.Contains(plain.String(), "\x1b") ||
		!strings.HasSuffix(lines[2], "· 12%") {
		t.Errorf("plain output %q: want a line per workload and one for the long round, no escapes", plain.String())
	}
	if !strings.Contains(tty.String(), "round 1/3 · 2%") {
		t.Errorf("terminal output %q lacks the round's progress", tty.String())
	}
}
