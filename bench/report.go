package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run measured. It is the JSON document 'swarmvpn bench
// --json' prints.
type Report struct {
	Command  string     `json:"command,omitempty"` // set by the caller
	Started  time.Time  `json:"started"`
	Seconds  float64    `json:"seconds"` // how long the run took
	Machine  Machine    `json:"machine"`
	Settings Settings   `json:"settings"`
	Paths    []PathInfo `json:"paths"` // in order; ratios refer to the first
	Figures  []Figure   `json:"figures"`
	Notes    []string   `json:"notes,omitempty"`
}

// Machine is where a run took place.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	OS     string `json:"os"`
	Arch   string `json:"arch"`
	Kernel string `json:"kernel,omitempty"`
	Go     string `json:"go"`
}

// Settings are the sizes a run used.
type Settings struct {
	Quick        bool    `json:"quick"`
	Rounds       int     `json:"rounds"` // measured rounds behind each median
	Warmup       int     `json:"warmup"` // rounds run and discarded first
	BulkSeconds  float64 `json:"bulk_seconds"`
	BulkFlows    []int   `json:"bulk_flows"`
	LatencyCount int     `json:"latency_count"`
	SetupCount   int     `json:"setup_count"`
	BurstFlows   int     `json:"burst_flows"`
	IdleFlows    int     `json:"idle_flows"`
	UDPSeconds   float64 `json:"udp_seconds"`
	UDPSizes     []int   `json:"udp_sizes"`
	RTTms        float64 `json:"rtt_ms,omitempty"`
	RTTSeconds   float64 `json:"rtt_seconds,omitempty"`
	Targets      string  `json:"targets"` // where the flows went
	// The capacity workload's clients, flows per client and round, when it
	// ran.
	CapacityClients int     `json:"capacity_clients,omitempty"`
	CapacityFlows   int     `json:"capacity_flows,omitempty"`
	CapacitySeconds float64 `json:"capacity_seconds,omitempty"`
}

// PathInfo names a measured path.
type PathInfo struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Via  string `json:"via"`
}

// Figure is one measured quantity on every path.
type Figure struct {
	ID       string   `json:"id"`       // stable, for scripts: "bulk_up_1", "latency_p99", ...
	Workload string   `json:"workload"` // its workload's name: "bulk", "latency", ...
	Label    string   `json:"label"`
	Unit     string   `json:"unit"`
	Better   string   `json:"better"` // "higher" or "lower"
	Results  []Result `json:"results"`
}

// Result is a figure on one path.
type Result struct {
	Path   string    `json:"path"`
	Value  float64   `json:"value"`           // the median of Rounds
	Rounds []float64 `json:"rounds"`          // each measured round
	Ratio  float64   `json:"ratio,omitempty"` // Value ÷ the first path's Value
	Error  string    `json:"error,omitempty"` // why there is no value
}

func newReport(cfg Config) *Report {
	s := Settings{
		Quick: cfg.Quick, Rounds: cfg.Rounds, Warmup: max(cfg.Warmup, 0),
		BulkSeconds: cfg.BulkDuration.Seconds(), BulkFlows: cfg.BulkFlows,
		LatencyCount: cfg.LatencyCount, SetupCount: cfg.SetupCount,
		BurstFlows: cfg.BurstCount, IdleFlows: cfg.IdleFlows,
		UDPSeconds: cfg.UDPDuration.Seconds(), UDPSizes: cfg.UDPSizes,
	}
	if cfg.RTT > 0 {
		s.RTTms, s.RTTSeconds = millis(cfg.RTT), cfg.RTTDuration.Seconds()
	}
	if slices.Contains(cfg.Workloads, WorkCapacity) {
		s.CapacityClients, s.CapacityFlows = cfg.Capacity.Clients, cfg.Capacity.Flows
		s.CapacitySeconds = cfg.Capacity.Duration.Seconds()
	}
	return &Report{Started: time.Now().UTC().Truncate(time.Second), Machine: thisMachine(), Settings: s}
}

// note adds a line to the report's notes, unless it is there already.
func (r *Report) note(format string, args ...any) {
	if n := fmt.Sprintf(format, args...); !slices.Contains(r.Notes, n) {
		r.Notes = append(r.Notes, n)
	}
}

func (r *Report) finish(started time.Time) {
	r.Seconds = math.Round(time.Since(started).Seconds()*10) / 10
}

// setRatios sets each result's ratio to the first path's value.
func (f *Figure) setRatios() {
	if len(f.Results) < 2 {
		return
	}
	first := f.Results[0]
	if first.Error != "" || first.Value == 0 {
		return
	}
	for i := range f.Results[1:] {
		r := &f.Results[i+1]
		if r.Error == "" {
			r.Ratio = r.Value / first.Value
		}
	}
}

// Figure returns the figure with id, or nil.
func (r *Report) Figure(id string) *Figure {
	for i := range r.Figures {
		if r.Figures[i].ID == id {
			return &r.Figures[i]
		}
	}
	return nil
}

// WriteTable writes the report as a table: a row per figure, a column per
// path, each value after the first path's followed by how the first path
// compares with it ("2.00× worse"); then the
// reasons for missing values and the notes.
func (r *Report) WriteTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	r.writeHeading(bw)
	var notes footnotes
	r.writeFigures(bw, &notes)
	if len(notes) > 0 {
		fmt.Fprintln(bw)
		for i, n := range notes {
			fmt.Fprintf(bw, "[%d] %s: %s\n", i+1, strings.Join(n.paths, ", "), n.why)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(bw, "note: %s\n", n)
	}
	return bw.Flush()
}

// writeHeading writes the lines above the table: the machine, how the
// figures were taken, and what each path goes through.
func (r *Report) writeHeading(bw *bufio.Writer) {
	m := r.Machine
	fmt.Fprintf(bw, "swarmvpn bench, %s: %s, %d cores, %s/%s", r.Started.Format("2006-01-02 15:04 UTC"), m.CPU, m.Cores, m.OS, m.Arch)
	if m.Kernel != "" {
		fmt.Fprintf(bw, " %s", m.Kernel)
	}
	fmt.Fprintf(bw, ", %s; %.0f s\n", m.Go, r.Seconds)
	warm := "no warm-up"
	if r.Settings.Warmup > 0 {
		warm = "after " + plural(r.Settings.Warmup, "warm-up round")
	}
	fmt.Fprintf(bw, "each figure: the median of %s %s (idle flows: no warm-up); paths take turns round by round\n",
		plural(r.Settings.Rounds, "round"), warm)
	if len(r.Paths) > 1 {
		fmt.Fprintf(bw, "beside each other path's figure: how %s compares with it (\"2.00× worse\": half the throughput, or twice the time)\n",
			r.Paths[0].Name)
	}
	if slices.ContainsFunc(r.Figures, func(f Figure) bool { return f.Unit == cpuUnit }) {
		fmt.Fprintln(bw, "CPU per GiB: the CPU seconds (user and system) a path's processes spent in a round, per GiB its flows carried at the application, both ways")
	}
	for _, p := range r.Paths {
		fmt.Fprintf(bw, "  %-12s %s\n", p.Name, p.Via)
	}
	fmt.Fprintln(bw)
}

// writeFigures writes the table itself, a row per figure; a missing value
// points to its reason in notes.
func (r *Report) writeFigures(bw *bufio.Writer, notes *footnotes) {
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "figure\tunit")
	for _, p := range r.Paths {
		fmt.Fprintf(tw, "\t%s", p.Name)
		if p != r.Paths[0] {
			fmt.Fprint(tw, "\t")
		}
	}
	fmt.Fprintln(tw, "\t")
	for _, f := range r.Figures {
		arrow := "↑"
		if f.Better == "lower" {
			arrow = "↓"
		}
		fmt.Fprintf(tw, "%s\t%s %s", f.Label, f.Unit, arrow)
		for i, res := range f.Results {
			switch {
			case res.Error != "":
				fmt.Fprintf(tw, "\t[%d]", notes.add(res.Path, res.Error))
			default:
				fmt.Fprintf(tw, "\t%s", number(res.Value))
			}
			if i > 0 {
				fmt.Fprintf(tw, "\t%s", compared(f, res))
			}
		}
		fmt.Fprintln(tw, "\t")
	}
	tw.Flush()
}

// compared says how the first path's figure compares with res, that of
// another path: "1.52× better" or "2.00× worse", whichever way the figure
// is better; "" without a ratio.
func compared(f Figure, res Result) string {
	if res.Ratio == 0 {
		return ""
	}
	k := res.Ratio // that path ÷ the first: the first's advantage when lower is better
	if f.Better != "lower" {
		k = 1 / k
	}
	switch s := fmt.Sprintf("%.2f", k); {
	case s == "1.00":
		return "1.00× (same)"
	case k > 1:
		return s + "× better"
	}
	return fmt.Sprintf("%.2f× worse", 1/k)
}

// footnote is one reason for missing values in the table, and the paths
// it applies to.
type footnote struct {
	why   string
	paths []string
}

// footnotes are the table's reasons for missing values, one per reason.
type footnotes []footnote

// add records that path has no value because of why, and returns the
// footnote's number.
func (n *footnotes) add(path, why string) int {
	for i := range *n {
		if f := &(*n)[i]; f.why == why {
			if !slices.Contains(f.paths, path) {
				f.paths = append(f.paths, path)
			}
			return i + 1
		}
	}
	*n = append(*n, footnote{why, []string{path}})
	return len(*n)
}

// number formats v with about three significant digits.
func number(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return thousands(int(math.Round(v)))
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// thisMachine describes the machine this process runs on.
func thisMachine() Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range bytes.Lines(b) {
			if k, v, ok := strings.Cut(string(line), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
