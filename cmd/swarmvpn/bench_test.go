package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/swarmvpn/swarmvpn/bench"
)

// TestBenchQuick runs 'swarmvpn bench --quick' end to end: an exit and a
// client of the real binary, the direct baseline and the long-link
// workload, and checks that the JSON has a value for every figure.
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole quick suite (about 30s)")
	}
	out, errOut, code := run(t, "bench", "--quick", "--json", "--direct", "--rtt", "20ms")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, errOut)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not one JSON document: %v\n%s", err, out)
	}
	if len(rep.Paths) != 2 || rep.Paths[0].Name != "swarmvpn" || rep.Paths[1].Name != "direct" {
		t.Fatalf("paths %+v, want swarmvpn then direct", rep.Paths)
	}
	if rep.Settings.Rounds < 2 || rep.Settings.Warmup < 1 || !rep.Settings.Quick {
		t.Errorf("settings %+v: want at least 2 rounds after a warm-up, quick", rep.Settings)
	}
	workloads := map[string]bool{}
	for _, f := range rep.Figures {
		workloads[f.Workload] = true
		if len(f.Results) != 2 {
			t.Errorf("%s: %d results, want 2", f.ID, len(f.Results))
			continue
		}
		for _, r := range f.Results {
			memory := f.ID == "idle_exit_kib" || f.ID == "idle_client_kib"
			cpu := f.Unit == "s/GiB"
			switch {
			case r.Path == "direct" && (memory || cpu):
				if !strings.Contains(r.Error, "not measured") {
					t.Errorf("%s on direct: %+v, want it not measured", f.ID, r)
				}
			case r.Error != "":
				t.Errorf("%s on %s: %s", f.ID, r.Path, r.Error)
			case r.Value == 0 && !zeroOK(f):
				t.Errorf("%s on %s: zero", f.ID, r.Path)
			case len(r.Rounds) != rep.Settings.Rounds:
				t.Errorf("%s on %s: %d rounds, want %d", f.ID, r.Path, len(r.Rounds), rep.Settings.Rounds)
			}
		}
		if f.Unit == "MB/s" && f.Results[1].Ratio == 0 {
			t.Errorf("%s: no ratio for direct", f.ID)
		}
	}
	for _, w := range bench.AllWorkloads {
		if !workloads[w] && w != bench.WorkCapacity && w != bench.WorkUTP { // only when named
			t.Errorf("no figure of workload %s", w)
		}
	}
	for _, id := range []string{"bulk_up_1", "bulk_up_8", "bulk_up_64", "bulk_down_1", "bulk_down_8", "bulk_down_64",
		"latency_median", "latency_p99", "latency_max", "setup_median", "setup_p99", "burst_all", "burst_errors",
		"idle_flows", "idle_failed", "idle_exit_kib", "idle_client_kib", "udp_100_rate", "udp_100_loss", "udp_1400_rate",
		"udp_1400_loss", "rtt_down", "rtt_up", "rtt_latency_median", "bulk_up_1_cpu", "bulk_up_1_cpu_client", "bulk_up_1_cpu_exit",
		"bulk_down_64_cpu", "udp_100_cpu_exit", "udp_1400_cpu_client"} {
		if rep.Figure(id) == nil {
			t.Errorf("no figure %s", id)
		}
	}
	if f := rep.Figure("burst_errors"); f != nil && f.Results[0].Value != 0 {
		t.Errorf("burst through swarmvpn: %v flows failed", f.Results[0].Value)
	}
}

// TestBenchTwoHopRTT runs the long-link workload on one hop and on two:
// each path's second client reaches its exit over delay lines, on two
// hops one in front of the relay and one in front of the exit (the relay
// verifies and dials the exit at the delay line's address). Every figure
// must carry bytes on both paths, and a round trip must wait for every
// long link on the way: at least one RTT on one hop, two on two.
func TestBenchTwoHopRTT(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two exits, a relay and four clients (about 20s)")
	}
	const rttMS = 20
	out, errOut, code := run(t, "bench", "--quick", "--json", "--hops", "2", "--rtt", fmt.Sprint(rttMS, "ms"), "--workloads", "rtt")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, errOut)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not one JSON document: %v\n%s", err, out)
	}
	if len(rep.Paths) != 2 || rep.Paths[1].Name != "2-hop" {
		t.Fatalf("paths %+v, want swarmvpn then 2-hop", rep.Paths)
	}
	if !strings.Contains(rep.Paths[1].Via, "relay → exit each with 20ms added") {
		t.Errorf("2-hop goes through %q: it does not say that each hop is a long link", rep.Paths[1].Via)
	}
	for _, id := range []string{"rtt_down", "rtt_up", "rtt_latency_median"} {
		f := rep.Figure(id)
		if f == nil {
			t.Errorf("no figure %s", id)
			continue
		}
		if len(f.Results) != 2 {
			t.Errorf("%s: %d results, want 2", id, len(f.Results))
			continue
		}
		for hops, r := range f.Results {
			switch {
			case r.Error != "":
				t.Errorf("%s on %s: %s", id, r.Path, r.Error)
			case len(r.Rounds) != rep.Settings.Rounds || slices.Contains(r.Rounds, 0):
				t.Errorf("%s on %s: rounds %v, want %d, none zero", id, r.Path, r.Rounds, rep.Settings.Rounds)
			case id == "rtt_latency_median" && r.Value < float64((hops+1)*rttMS):
				t.Errorf("%s on %s: %v ms, want at least %d: a round trip crosses %d long links", id, r.Path, r.Value, (hops+1)*rttMS, hops+1)
			}
		}
		if f.Results[1].Ratio == 0 {
			t.Errorf("%s: no ratio for two hops", id)
		}
	}
}

// zeroOK reports whether 0 is a normal value of f: a loss, or a count of
// failures.
func zeroOK(f bench.Figure) bool { return f.Unit == "%" || f.Unit == "flows" && f.Better == "lower" }

// TestBenchTable checks the default output: a table on stdout, and on a
// non-terminal stderr plain progress lines without escape codes.
func TestBenchTable(t *testing.T) {
	out, errOut, code := run(t, "bench", "--quick", "--workloads", "latency,setup")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, errOut)
	}
	for _, want := range []string{"request/response, 64 B on an open flow: median", "new flow + first byte", "swarmvpn", "µs"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(errOut, "\x1b") || !strings.Contains(errOut, "bench: [") {
		t.Errorf("progress on a non-terminal: %q, want plain lines", errOut)
	}
}

func TestBenchBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"nothing at the socks address", []string{"--socks", "127.0.0.1:1"},
			[]string{"--socks 127.0.0.1:1:", "connection refused", "start the SOCKS5 proxy"}},
		{"malformed socks", []string{"--socks", "localhost"}, []string{"HOST:PORT"}},
		{"rtt-socks without rtt", []string{"--socks", "a=127.0.0.1:1", "--rtt-socks", "a=127.0.0.1:2"}, []string{"--rtt"}},
		{"rtt-socks unknown name", []string{"--socks", "a=127.0.0.1:1", "--rtt", "50ms", "--rtt-socks", "b=127.0.0.1:2"}, []string{"no --socks proxy is named \"b\""}},
		{"remote exit without target host", []string{"--exit", "baaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@192.0.2.1:7843"}, []string{"--target-host"}},
		{"target host name", []string{"--target-host", "example.org"}, []string{"IP address"}},
		{"unknown workload", []string{"--workloads", "bulk,speed"}, []string{"unknown workload \"speed\""}},
		{"socks-pids unknown name", []string{"--socks", "a=127.0.0.1:1", "--socks-pids", "b=12"}, []string{"no --socks proxy is named \"b\""}},
		{"socks-pids malformed", []string{"--socks", "a=127.0.0.1:1", "--socks-pids", "a=12:x"}, []string{"--socks-pids", "NAME=PID"}},
		{"socks-pids zero", []string{"--socks", "a=127.0.0.1:1", "--socks-pids", "a=0"}, []string{"--socks-pids", "NAME=PID"}},
		{"too many capacity clients", []string{"--workloads", "capacity", "--capacity-clients", "5000"}, []string{"capacity clients 5000"}},
		{"negative utp size", []string{"--workloads", "utp", "--utp-size", "-5"}, []string{"--utp-size -5", "MiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, append([]string{"bench"}, tt.args...)...)
			if code == 0 {
				t.Fatalf("exit status 0; output %q", out)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "swarmvpn: ") {
				t.Fatalf("stderr %q: want one line", errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("error %q does not mention %q", lines[0], w)
				}
			}
		})
	}
}
