package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestWriteHTML: the page has a chart per figure with a bar per measured
// path, ratios marked better or worse, the reasons for missing values, the
// machine and the command, escaped, and nothing fetched from elsewhere.
func TestWriteHTML(t *testing.T) {
	r := &Report{Command: "swarmvpn bench --socks '<x>'=127.0.0.1:1", Started: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
		Machine:  Machine{CPU: "Test CPU", Cores: 2, OS: "linux", Arch: "amd64", Go: "go1.26"},
		Settings: Settings{Rounds: 3, Warmup: 1},
		Paths:    []PathInfo{{Name: "swarmvpn", Via: "SOCKS5"}, {Name: "direct", Via: "-"}},
		Figures: []Figure{
			{ID: "bulk_down_1", Workload: "bulk", Label: "bulk download, 1 flow", Unit: "MB/s", Better: "higher",
				Results: []Result{{Path: "swarmvpn", Value: 400}, {Path: "direct", Value: 2000, Ratio: 5}}},
			{ID: "latency_p50", Workload: "latency", Label: "request/response: median", Unit: "µs", Better: "lower",
				Results: []Result{{Path: "swarmvpn", Value: 100}, {Path: "direct", Value: 200, Ratio: 2}}},
			{ID: "idle_exit_mem", Workload: "idle", Label: "idle flows: exit memory", Unit: "KiB", Better: "lower",
				Results: []Result{{Path: "swarmvpn", Value: 20}, {Path: "direct", Error: "no exit process"}}},
		},
	}
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		"<title>swarmvpn bench, 2026-05-01 12:00 UTC</title>",
		"Test CPU, 2 cores, linux/amd64",
		"swarmvpn bench --socks &#39;&lt;x&gt;&#39;=127.0.0.1:1",
		`class="ratio better"`, ">5.00×<", // direct is faster: better
		`class="ratio worse"`, ">2.00×<", // and slower in latency: worse
		"no value [1]", "direct: no exit process",
		`data-figure="bulk_down_1"`, `data-workload="idle"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if n := strings.Count(page, `<rect class="bar"`); n != 5 {
		t.Errorf("%d bars, want 5 (one per measured value)", n)
	}
	for _, bad := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q: it must stand alone", bad)
		}
	}
}
