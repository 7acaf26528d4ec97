package pool

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// records is a slog handler that passes each record to a channel, and
// drops those that do not fit.
type records chan slog.Record

func (r records) Enabled(context.Context, slog.Level) bool { return true }
func (r records) Handle(_ context.Context, rec slog.Record) error {
	select {
	case r <- rec:
	default: // the test has read what it needs: the pool must not block
	}
	return nil
}
func (r records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r records) WithGroup(string) slog.Handler      { return r }

// TestWrongPinnedID: an exit whose key is not the pinned one is a problem
// only the user can fix. It is logged once as an error that says what to
// do, retried only at the longest back-off, and shown in Status and Exits.
func TestWrongPinnedID(t *testing.T) {
	exitID, _ := link.NewIdentity()
	pinned, _ := link.NewIdentity()
	clientID, _ := link.NewIdentity()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := exit.New(exit.Config{Link: link.Config{Identity: exitID}, DrainTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exitDone := make(chan struct{})
	go func() { e.Serve(ctx, ln); close(exitDone) }()

	const maxBackoff = 20 * time.Millisecond
	logs := make(records, 64)
	p, err := New(Config{Link: link.Config{Identity: clientID, Log: slog.New(slog.DiscardHandler)},
		Exits:      []link.ExitAddr{{ID: pinned.ID(), Addr: ln.Addr().String()}},
		MinBackoff: time.Millisecond, MaxBackoff: maxBackoff, Log: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	poolDone := make(chan struct{})
	go func() { p.Run(ctx); close(poolDone) }()
	t.Cleanup(func() { cancel(); <-poolDone; <-exitDone })

	var errs, attempts int
	timeout := time.After(20 * time.Second)
	for attempts < 4 {
		var rec slog.Record
		select {
		case rec = <-logs:
		case <-timeout:
			t.Fatalf("only %d failed attempts logged", attempts)
		}
		attrs := map[string]slog.Value{}
		rec.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value; return true })
		if rec.Message != "exit is not the one pinned" {
			t.Fatalf("logged %s %q %v, want only the mismatch", rec.Level, rec.Message, attrs)
		}
		attempts++
		if rec.Level == slog.LevelError {
			errs++
			err, _ := attrs["err"].Any().(error)
			if !errors.Is(err, link.ErrPeerMismatch) || !strings.Contains(err.Error(), "'swarmvpn exit' prints") ||
				!strings.Contains(err.Error(), "correct --exit") {
				t.Errorf("error logged: %v, want what to do", err)
			}
		} else if rec.Level != slog.LevelDebug {
			t.Errorf("attempt %d logged at %s, want debug after the first", attempts, rec.Level)
		}
		if d := attrs["retry_in"].Duration(); d != maxBackoff {
			t.Errorf("attempt %d: retry in %v, want the longest back-off %v", attempts, d, maxBackoff)
		}
	}
	if errs != 1 {
		t.Errorf("%d errors logged in %d attempts, want 1", errs, attempts)
	}
	st := p.Status()
	if st.State != StateDown || !strings.Contains(st.LastError, "different peer ID") || !strings.Contains(st.LastError, "correct --exit") {
		t.Errorf("status %+v: want down with the mismatch and what to do", st)
	}
	if ex := p.Exits(); len(ex) != 1 || !strings.Contains(ex[0].LastErr, "correct --exit") {
		t.Errorf("exits %+v: want the mismatch on the exit", ex)
	}
}
