package bench

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

//go:embed html/report.html.tmpl
var reportHTML string

var reportTmpl = template.Must(template.New("report").Parse(reportHTML))

// pathColors tell the paths apart in the charts, first path first.
var pathColors = []string{"#2f6fdb", "#e07b24", "#1f8a4c", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d"}

// Chart geometry of one figure, in SVG user units.
const (
	chartWidth = 620 // the whole chart
	labelWidth = 110 // the path names on the left
	valueRoom  = 150 // right of the longest bar: its value and ratio
	barHeight  = 20
	barGap     = 6
)

// htmlReport is what the template shows.
type htmlReport struct {
	*Report
	Title   string
	Legend  []htmlPath
	Groups  []htmlGroup
	Notes   []string
	Missing footnotes
}

type htmlPath struct {
	Name, Via, Color string
}

// htmlGroup is one workload's figures.
type htmlGroup struct {
	Workload string
	Figures  []htmlFigure
}

// htmlFigure is one figure: its chart's bars, and its table row.
type htmlFigure struct {
	ID, Label, Unit, Arrow, Better string
	Width, Height                  int
	Bars                           []htmlBar
}

// htmlBar is one path's value of a figure.
type htmlBar struct {
	Path, Color      string
	Y, W, TextY      float64
	Value, Ratio     string
	RatioClass       string // better, worse, same
	Missing          string // why there is no value
	Note             int    // its footnote
	ValueX, RatioX   float64
	HasValue, HasRat bool
}

// WriteHTML writes the report as one self-contained HTML page: the machine
// and the command, a bar chart per figure with each path's ratio to the
// first marked, and the table. It needs nothing but a browser: no script,
// no file or site besides itself.
func (r *Report) WriteHTML(w io.Writer) error {
	h := htmlReport{Report: r, Title: "swarmvpn bench, " + r.Started.Format("2006-01-02 15:04 UTC"), Notes: r.Notes}
	colors := map[string]string{}
	for i, p := range r.Paths {
		c := pathColors[i%len(pathColors)]
		colors[p.Name] = c
		h.Legend = append(h.Legend, htmlPath{Name: p.Name, Via: p.Via, Color: c})
	}
	for _, f := range r.Figures {
		if n := len(h.Groups); n == 0 || h.Groups[n-1].Workload != f.Workload {
			h.Groups = append(h.Groups, htmlGroup{Workload: f.Workload})
		}
		g := &h.Groups[len(h.Groups)-1]
		g.Figures = append(g.Figures, h.figure(f, colors))
	}
	return reportTmpl.Execute(w, h)
}

// figure lays out one figure's chart: bars scaled to its largest value.
func (h *htmlReport) figure(f Figure, colors map[string]string) htmlFigure {
	hf := htmlFigure{ID: f.ID, Label: f.Label, Unit: f.Unit, Better: f.Better, Arrow: "↑", Width: chartWidth}
	if f.Better == "lower" {
		hf.Arrow = "↓"
	}
	top := 0.0
	for _, res := range f.Results {
		if res.Error == "" && !math.IsNaN(res.Value) {
			top = max(top, res.Value)
		}
	}
	span := float64(chartWidth - labelWidth - valueRoom)
	for i, res := range f.Results {
		y := float64(i*(barHeight+barGap)) + 2
		b := htmlBar{Path: res.Path, Color: colors[res.Path], Y: y, TextY: y + barHeight/2 + 5}
		if res.Error != "" || math.IsNaN(res.Value) {
			b.Missing = res.Error
			b.Note = h.Missing.add(res.Path, res.Error)
			b.ValueX = labelWidth + 4
		} else {
			b.HasValue = true
			if top > 0 {
				b.W = math.Max(res.Value/top*span, 1)
			}
			b.Value = number(res.Value)
			b.ValueX = labelWidth + b.W + 6
			b.RatioX = b.ValueX + float64(len([]rune(b.Value))*8+14)
		}
		if i > 0 && res.Ratio != 0 {
			b.HasRat = true
			b.Ratio = fmt.Sprintf("%.2f×", res.Ratio)
			b.RatioClass = ratioClass(res.Ratio, f.Better)
		}
		hf.Bars = append(hf.Bars, b)
	}
	hf.Height = len(f.Results)*(barHeight+barGap) + 2
	return hf
}

// ratioClass says whether a ratio to the first path is better, worse or
// about the same (within 5%), given which way is better.
func ratioClass(ratio float64, better string) string {
	switch {
	case math.Abs(ratio-1) < 0.05:
		return "same"
	case (ratio > 1) == (better != "lower"):
		return "better"
	}
	return "worse"
}

// Paths joins a footnote's paths, for the template.
func (n footnote) Paths() string { return strings.Join(n.paths, ", ") }

// Why is a footnote's reason, for the template.
func (n footnote) Why() string { return n.why }
