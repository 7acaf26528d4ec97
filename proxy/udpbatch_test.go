package proxy

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// queueAssoc is an association that batches: it holds at most room
// datagrams, and its Flush fails from the failAt'th call on.
type queueAssoc struct {
	fakeAssoc
	room, failAt int
	queued       []string
	flushes      int
	sent         []string
}

func (q *queueAssoc) Queue(p []byte, _ wire.Addr) bool {
	if len(q.queued) == q.room {
		return false
	}
	q.queued = append(q.queued, string(p))
	return true
}

func (q *queueAssoc) Flush() error {
	q.flushes++
	defer func() { q.queued = q.queued[:0] }()
	if q.failAt > 0 && q.flushes >= q.failAt {
		return errors.New("link down")
	}
	q.sent = append(q.sent, q.queued...)
	return nil
}

// Every datagram handed to a batching association is counted once: sent
// when its batch's Flush succeeds, lost with the link when it fails; a
// full batch is flushed and the datagram queued again, in order.
func TestUDPRelayBatchAccounting(t *testing.T) {
	for _, tc := range []struct {
		name           string
		failAt         int
		wantOut, wantL uint64
		wantSent       []string
	}{
		{"all sent", 0, 7, 0, []string{"0", "1", "2", "3", "4", "5", "6"}},
		{"second flush fails", 2, 3, 4, []string{"0", "1", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := &udpRelay{}
			var total udpCounters
			r.count = udpCount{own: &r.own, total: &total}
			r.up = newUplink(ctx, &fakeAssociator{}, slog.New(slog.DiscardHandler), r.count)
			q := &queueAssoc{fakeAssoc: fakeAssoc{closed: make(chan struct{})}, room: 3, failAt: tc.failAt}
			r.up.open(q)
			b := outBatch{l: r.up.get()}
			for i := range 7 {
				r.send(&b, []byte{'0' + byte(i)}, wire.Addr{Name: "x", Port: 1})
			}
			r.flush(&b)
			st := r.own.stats()
			if st.DatagramsOut != tc.wantOut || st.DropLinkDown != tc.wantL {
				t.Fatalf("out %d, lost with the link %d; want %d and %d", st.DatagramsOut, st.DropLinkDown, tc.wantOut, tc.wantL)
			}
			if st.DatagramsOut+st.DropLinkDown != 7 {
				t.Fatalf("%d datagrams counted, want 7", st.DatagramsOut+st.DropLinkDown)
			}
			if len(q.sent) != len(tc.wantSent) {
				t.Fatalf("sent %q, want %q", q.sent, tc.wantSent)
			}
			for i := range q.sent {
				if q.sent[i] != tc.wantSent[i] {
					t.Fatalf("sent %q, want %q", q.sent, tc.wantSent)
				}
			}
			cancel()
			r.up.close()
		})
	}
}
