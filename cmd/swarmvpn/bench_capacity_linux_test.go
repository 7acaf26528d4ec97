package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/swarmvpn/swarmvpn/bench"
	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

// TestBenchCapacity runs the capacity workload, small: client processes
// of their own against bench's exit, every flow at once.
func TestBenchCapacity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dozen processes")
	}
	out, errOut, code := run(t, "bench", "--quick", "--json", "--direct", "--workloads", "capacity",
		"--capacity-clients", "6", "--capacity-flows", "4")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, errOut)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not one JSON document: %v\n%s", err, out)
	}
	for _, id := range []string{"capacity_mbps", "capacity_client_min", "capacity_client_median", "capacity_failed",
		"capacity_exit_cpu", "capacity_clients_cpu"} {
		f := rep.Figure(id)
		if f == nil || len(f.Results) != 2 {
			t.Errorf("figure %s: %+v, want results on 2 paths", id, f)
			continue
		}
		if r := f.Results[1]; !strings.Contains(r.Error, "not measured") {
			t.Errorf("%s on direct: %+v, want not measured", id, r)
		}
		switch r := f.Results[0]; {
		case r.Error != "":
			t.Errorf("%s: %s", id, r.Error)
		case id == "capacity_failed" && r.Value != 0:
			t.Errorf("%s: %v flows failed", id, r.Value)
		case id != "capacity_failed" && r.Value <= 0:
			t.Errorf("%s: %v", id, r.Value)
		}
	}
	if len(rep.Figures) != 6 {
		t.Errorf("%d figures, want the 6 of capacity only", len(rep.Figures))
	}
	for _, want := range []string{"starting clients, 0 of 6", "starting clients, 6 of 6"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("progress lacks %q:\n%s", want, errOut)
		}
	}
}

// TestBenchCapacityInterrupt stops bench with SIGINT while the capacity
// workload's clients run, and checks that every process it started is
// gone.
func TestBenchCapacityInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dozen processes")
	}
	p := start(t, "bench", "--workloads", "capacity", "--capacity-clients", "6", "--capacity-flows", "4")
	testnet.WaitFor(t, "the capacity clients to start", func() bool { return strings.Contains(p.output(), "6 of 6") })
	children := childrenOf(p.cmd.Process.Pid)
	if len(children) != 8 {
		t.Fatalf("bench runs %d child processes, want an exit, a client and 6 more clients", len(children))
	}
	interruptBench(t, p)
	noneRuns(t, children)
}
