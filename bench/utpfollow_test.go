package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestUTPFollowRejectsBadTimes: the leecher's "done" line is a process's
// output; a time that is not a finite number of seconds, or one longer
// than the leecher has run, is an error, not a figure.
func TestUTPFollowRejectsBadTimes(t *testing.T) {
	tests := []struct {
		name, line string
		ok         bool
	}{
		{"good", "done 1048576 0.500000 2", true},
		{"zero", "done 1048576 0.000000 2", false},
		{"negative", "done 1048576 -1 2", false},
		{"NaN", "done 1048576 NaN 2", false},
		{"infinite", "done 1048576 +Inf 2", false},
		{"longer than the run", "done 1048576 3600 2", false},
		{"wrong size", "done 1048575 0.5 2", false},
		{"negative peers", "done 1048576 0.5 -1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &utpRig{cfg: UTPConfig{Size: 1 << 20}, detail: func(string) {}}
			p := &pyProc{role: "uTP leecher", lines: make(chan string, 1)}
			p.lines <- tt.line
			close(p.lines)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			total, secs, _, err := r.follow(ctx, p)
			if tt.ok {
				if err != nil || total != 1<<20 || secs != 0.5 {
					t.Fatalf("follow(%q) = %d, %v, %v; want 1 MiB in 0.5s", tt.line, total, secs, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "leecher") {
				t.Fatalf("follow(%q) = %d, %v, %v; want an error", tt.line, total, secs, err)
			}
		})
	}
}
