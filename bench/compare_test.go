package bench

import (
	"bytes"
	"strings"
	"testing"
)

// TestCompared: the table says how the first path does against each
// other one, in words that read the same way for throughput and latency.
func TestCompared(t *testing.T) {
	higher, lower := Figure{Better: "higher"}, Figure{Better: "lower"}
	tests := []struct {
		name string
		f    Figure
		res  Result
		want string
	}{
		{"half the throughput", higher, Result{Value: 200, Ratio: 2}, "2.00× worse"},
		{"more throughput", higher, Result{Value: 50, Ratio: 0.5}, "2.00× better"},
		{"twice the latency", lower, Result{Value: 50, Ratio: 0.5}, "2.00× worse"},
		{"less latency", lower, Result{Value: 300, Ratio: 3}, "3.00× better"},
		{"same", lower, Result{Value: 100, Ratio: 1.001}, "1.00× (same)"},
		{"no ratio", higher, Result{Error: "not measured"}, ""},
	}
	for _, tt := range tests {
		if got := compared(tt.f, tt.res); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestTableExplainsComparison(t *testing.T) {
	r := &Report{Settings: Settings{Rounds: 3},
		Paths: []PathInfo{{Name: "swarmvpn", Via: "here"}, {Name: "direct", Via: "no proxy"}},
		Figures: []Figure{
			{ID: "bulk", Label: "bulk", Unit: "MB/s", Better: "higher",
				Results: []Result{{Path: "swarmvpn", Value: 100}, {Path: "direct", Value: 200}}},
			{ID: "latency", Label: "latency p50", Unit: "µs", Better: "lower",
				Results: []Result{{Path: "swarmvpn", Value: 80}, {Path: "direct", Value: 20}}},
		}}
	for i := range r.Figures {
		r.Figures[i].setRatios()
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"how swarmvpn compares with it", "2.00× worse", "4.00× worse"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "latency") && !strings.Contains(line, "4.00× worse") {
			t.Errorf("latency row %q: swarmvpn at 4× the direct latency is 4.00× worse", line)
		}
	}
}
