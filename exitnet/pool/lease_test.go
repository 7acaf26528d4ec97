package pool

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// leasePair returns the client's lease on one end of a stream and the
// exit's end of it.
func leasePair(t *testing.T) (*lease, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	conf := yamux.DefaultConfig()
	conf.LogOutput = io.Discard
	cs, err := yamux.Client(a, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := yamux.Server(b, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close(); ss.Close() })
	st, err := cs.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st.Write(nil) // sends the SYN
	exitEnd, err := ss.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	return newLease(st, 40000, slog.New(slog.DiscardHandler)), exitEnd
}

// sendMove writes what an exit whose router moved the forward's port
// sends: a public port message.
func sendMove(t *testing.T, exitEnd net.Conn, port uint16) {
	t.Helper()
	msg, err := wire.AppendLeaseMsg(nil, wire.LeasePublicPort, wire.PublicPort{Port: port}.Body())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exitEnd.Write(msg); err != nil {
		t.Fatal(err)
	}
}

// A stream of moved ports from the exit is announced at most once per
// minMoveGap, the newest port at the gap's end: a hostile or faulty exit
// cannot make the client run its hook and reannounce to its trackers in a
// loop.
func TestLeaseMovesRateLimited(t *testing.T) {
	defer func(g time.Duration) { minMoveGap = g }(minMoveGap)
	minMoveGap = 300 * time.Millisecond
	l, exitEnd := leasePair(t)
	moved := make(chan uint16, 1000)
	l.moved = func(p uint16) { moved <- p }
	go l.read()
	const moves = 200
	for i := range moves {
		sendMove(t, exitEnd, uint16(50000+i))
	}
	var got []uint16
	deadline := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case p := <-moved:
			got = append(got, p)
		case <-deadline:
			t.Fatalf("announced %v: want the first move at once and the newest at the gap's end", got)
		}
	}
	select { // a third would have come by the next gap's end
	case p := <-moved:
		got = append(got, p)
	case <-time.After(2 * minMoveGap):
	}
	last := uint16(50000 + moves - 1)
	if len(got) != 2 || got[0] != 50000 || got[1] != last {
		t.Errorf("announced %d moves %v, want 2: the first (50000) at once and the newest (%d) at the gap's end", len(got), got, last)
	}
}

// Once the forward's stream ends, a move waiting for the gap's end is not
// announced.
func TestLeaseMoveDroppedAfterEnd(t *testing.T) {
	defer func(g time.Duration) { minMoveGap = g }(minMoveGap)
	minMoveGap = 200 * time.Millisecond
	l, exitEnd := leasePair(t)
	moved := make(chan uint16, 10)
	l.moved = func(p uint16) { moved <- p }
	go l.read()
	sendMove(t, exitEnd, 50001)
	sendMove(t, exitEnd, 50002)
	if p := <-moved; p != 50001 {
		t.Fatalf("first move announced as %d, want 50001", p)
	}
	exitEnd.Close()
	<-l.done
	select {
	case p := <-moved:
		t.Errorf("move to %d announced after the forward ended", p)
	case <-time.After(3 * minMoveGap):
	}
}
