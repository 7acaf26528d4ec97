package client

import (
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

func exitAddr(b byte, addr string) link.ExitAddr {
	var id link.PeerID
	id[0] = b
	return link.ExitAddr{ID: id, Addr: addr}
}

// TestEvents: the pool's status changes become events, in order, folded
// when they repeat, and the ring stays bounded.
func TestEvents(t *testing.T) {
	a, b := exitAddr(1, "192.0.2.1:7843"), exitAddr(2, "192.0.2.2:7843")
	up := func(e link.ExitAddr, port uint16) pool.Status {
		return pool.Status{State: pool.StateUp, Exit: e, ForwardedPort: port}
	}
	down := func(e link.ExitAddr, err string) pool.Status {
		return pool.Status{State: pool.StateDown, Exit: e, LastError: err}
	}
	for _, tc := range []struct {
		name    string
		forward bool
		steps   []pool.Status
		want    []string // kind: text fragment
	}{
		{"up with a port", true, []pool.Status{up(a, 40001)},
			[]string{"link_up:link up to exit", "port:forwarded port 40001"}},
		{"no port lent", true, []pool.Status{up(a, 0)},
			[]string{"link_up:", "refused:lends no forwarded port"}},
		{"no port asked", false, []pool.Status{up(a, 0)}, []string{"link_up:"}},
		{"down, then refusals folded", false,
			[]pool.Status{up(a, 0), down(a, "link to exit closed"), down(a, "dial: connection refused"),
				down(b, "dial: connection refused"), down(a, "dial: timeout")},
			[]string{"link_up:", "link_down:link to exit closed", "refused:connection refused", "refused:timeout"}},
		{"down and up elsewhere at once is a failover", true,
			[]pool.Status{up(a, 40001), down(a, "dial: connection refused"), up(b, 40007)},
			[]string{"link_up:", "port:40001", "link_down:connection refused", "failover:moved from exit", "port:40007 at exit"}},
		{"back to the same exit is a link up", false,
			[]pool.Status{up(a, 0), down(a, "closed"), up(a, 0)},
			[]string{"link_up:", "link_down:closed", "link_up:"}},
		{"failover keeps the port news", true,
			[]pool.Status{up(a, 40001), up(a, 0), up(b, 40007)},
			[]string{"link_up:", "port:40001", "failover:moved from exit", "port:40007 at exit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := newEvents(tc.forward)
			for _, st := range tc.steps {
				ev.observe(st)
			}
			got := ev.list()
			if len(got) != len(tc.want) {
				t.Fatalf("events %+v, want %v", got, tc.want)
			}
			for i, w := range tc.want {
				kind, frag, _ := strings.Cut(w, ":")
				if got[i].Kind != kind || !strings.Contains(got[i].Text, frag) {
					t.Errorf("event %d = %s %q, want %s containing %q", i, got[i].Kind, got[i].Text, kind, frag)
				}
			}
		})
	}

	ev := newEvents(false)
	woke := ev.changed()
	for i := range 3 * maxEvents {
		ev.add(EventRefused, strings.Repeat("x", i%7+1)+time.Duration(i).String())
	}
	select {
	case <-woke:
	default:
		t.Error("changed() was not closed by an event")
	}
	if n := len(ev.list()); n != maxEvents {
		t.Errorf("%d events kept, want %d", n, maxEvents)
	}
	ev.add(EventRefused, "same")
	ev.add(EventRefused, "same")
	if l := ev.list(); l[len(l)-1].Repeat != 1 {
		t.Errorf("a repeated event was not folded: %+v", l[len(l)-1])
	}
}

func TestAdvice(t *testing.T) {
	for _, tc := range []struct {
		name    string
		r       Report
		forward bool
		exits   int
		want    string
	}{
		{"all well", Report{Link: "up", ForwardedPort: 40001}, true, 1, ""},
		{"no exit known", Report{Link: "down"}, true, 0, "No exit known"},
		{"no exit known, dht on", Report{Link: "down", DHT: &DHTReport{Path: "direct"}}, true, 0, "looking for exits on the DHT"},
		{"exit unreachable", Report{Link: "down", LastError: "connection refused"}, true, 1, "connection refused"},
		{"not connectable", Report{Link: "up"}, true, 1, "Not connectable"},
		{"no port wanted", Report{Link: "up"}, false, 1, ""},
		{"qbittorrent", Report{Link: "up", ForwardedPort: 1, QBittorrent: &QBittorrentReport{URL: "http://127.0.0.1:8080",
			Findings: []string{"lsd: Local Peer Discovery is on"}}}, true, 1, "doctor --qbittorrent http://127.0.0.1:8080 --fix"},
		{"qbittorrent away", Report{Link: "up", ForwardedPort: 1, QBittorrent: &QBittorrentReport{Error: "refused"}}, true, 1, "Cannot read qBittorrent"},
		{"port unreachable", Report{Link: "up", ForwardedPort: 40001,
			Reachability: &Reachability{Port: 40001, TCP: "refused", UDP: "no-association"}}, true, 1, "listening on port 40001"},
		{"port reachable", Report{Link: "up", ForwardedPort: 40001,
			Reachability: &Reachability{Port: 40001, Reachable: true}}, true, 1, ""},
		{"old port unreachable", Report{Link: "up", ForwardedPort: 40002,
			Reachability: &Reachability{Port: 40001}}, true, 1, ""},
		{"check failed", Report{Link: "up", ForwardedPort: 40001,
			Reachability: &Reachability{Port: 40001, Error: "timeout"}}, true, 1, ""},
	} {
		got := advice(tc.r, tc.forward, tc.exits)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: advice %q, want %q", tc.name, got, tc.want)
		}
	}
}
