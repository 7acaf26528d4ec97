package ui

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

// TestStreamLinkDrop: a client's page hears at once that its link dropped.
// The interval is an hour, so only the client's own news can bring the
// update.
func TestStreamLinkDrop(t *testing.T) {
	tp := testnet.Start(t, testnet.Options{})
	testnet.WaitFor(t, "link up", func() bool { return tp.Pool.Status().State == "up" })
	s, err := New(Config{Page: ClientPage, Status: func() Snapshot { return tp.Client.Report() },
		Changed: tp.Client.Changed, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	st := OpenStream(t, "http://"+ln.Addr().String()+"/api/events")
	read := func() client.Report {
		for {
			name, data, err := st.next()
			if err != nil {
				t.Fatalf("event stream: %v", err)
			}
			if name != "status" {
				continue
			}
			var r client.Report
			if err := json.Unmarshal([]byte(data), &r); err != nil {
				t.Fatalf("status event %q: %v", data, err)
			}
			return r
		}
	}
	if r := read(); r.Link != "up" || r.Exit != tp.ExitAddr.String() {
		t.Fatalf("first status: link %q to %q, want up to %s", r.Link, r.Exit, tp.ExitAddr)
	}
	tp.StopExit()
	for {
		r := read()
		if r.Link == "up" {
			continue
		}
		var down bool
		for _, e := range r.Events {
			down = down || e.Kind == client.EventLinkDown
		}
		if !down {
			t.Fatalf("link %s, but no link_down event in %+v", r.Link, r.Events)
		}
		if r.Advice == "" {
			t.Errorf("link %s and no advice", r.Link)
		}
		return
	}
}
