package main

import (
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
)

// TestExitDHTLine: 'status --exit' says whether the exit is on the DHT,
// whether it publishes, on which port and when it last did.
func TestExitDHTLine(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		d    *exit.DHTReport
		want []string
	}{
		{"off", nil, []string{"off"}},
		{"publishing", &exit.DHTReport{Publishing: true, Port: 17843, Nodes: 40, Seq: 1740830000,
			LastAnnounce: now.Add(-time.Minute), LastPublish: now.Add(-2 * time.Minute)},
			[]string{"40 nodes", "announcing port 17843", "last announce 1m0s ago", "last publish 2m0s ago", "seq 1740830000"}},
		{"not yet", &exit.DHTReport{Publishing: true, Port: 7843}, []string{"last publish never"}},
		{"unreachable", &exit.DHTReport{Nodes: 3, LastPublish: now.Add(-time.Hour), Failures: 2},
			[]string{"not publishing", "last publish 1h0m0s ago", "2 failed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := exitDHTLine(tc.d, now)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
		})
	}
}
