package bench

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Status is what a run is doing, for a progress display.
type Status struct {
	Workload string // "bulk download, 8 flows", or "starting"
	Path     string
	Round    int // 1 to Rounds; 0 or less during warm-up
	Rounds   int
	Elapsed  time.Duration // since the run started
	Detail   string        // how far a long round has got: "45%, 30.0 MB/s"
}

// Progress shows Status updates on w: on a terminal, one line rewritten in
// place; elsewhere (a CI log), a plain line when a workload begins, and
// during a long round, how far it has got every plainEvery.
type Progress struct {
	w      io.Writer
	tty    bool
	mu     sync.Mutex
	last   string        // the workload of the last plain line
	lastAt time.Duration // the Elapsed of the last plain line
	wide   bool          // a line is showing on the terminal
}

// plainEvery is how often a plain display shows how far a long round has
// got.
const plainEvery = 10 * time.Second

// NewProgress returns a display on w; tty says whether w is a terminal.
func NewProgress(w io.Writer, tty bool) *Progress { return &Progress{w: w, tty: tty} }

// Update shows s.
func (p *Progress) Update(s Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.tty {
		switch {
		case s.Workload != p.last || s.Workload == "starting":
			p.last, p.lastAt = s.Workload, s.Elapsed
			fmt.Fprintf(p.w, "bench: [%3.0fs] %s\n", s.Elapsed.Seconds(), s.Workload)
		case s.Detail != "" && s.Elapsed-p.lastAt >= plainEvery:
			p.lastAt = s.Elapsed
			fmt.Fprintf(p.w, "bench: [%3.0fs] %s · %s · %s\n", s.Elapsed.Seconds(), s.Workload, s.Path, s.Detail)
		}
		return
	}
	round := "warm-up"
	switch {
	case s.Rounds == 0:
		round = ""
	case s.Round > 0:
		round = fmt.Sprintf("round %d/%d", s.Round, s.Rounds)
	}
	line := fmt.Sprintf("[%3.0fs] %s · %s · %s", s.Elapsed.Seconds(), s.Workload, s.Path, round)
	if s.Detail != "" {
		line += " · " + s.Detail
	}
	if r := []rune(line); len(r) > 100 {
		line = string(r[:100])
	}
	// \r and "erase to end of line": the line is rewritten in place.
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	p.wide = true
}

// Done clears the terminal line, if one is showing.
func (p *Progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.wide {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.wide = false
	}
}
