package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Accept back-off after a temporary error (too many open files, for one):
// it starts short, doubles, and is capped so that the listener recovers
// within a second of the cause going away.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// Accept accepts connections on ln until ctx ends or Accept fails with an
// error that is not temporary, and runs handle for each in a goroutine of
// wg. A temporary error (out of file descriptors, a connection aborted
// before it was accepted) is logged to log, if not nil, and retried after a
// back-off. ln is closed when Accept returns; the goroutines of wg are the
// caller's to wait for. It returns nil when ctx ended, else the error from
// Accept.
func Accept(ctx context.Context, ln net.Listener, wg *sync.WaitGroup, log *slog.Logger, handle func(net.Conn)) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !IsTemporary(err) {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
			if log != nil {
				log.Warn("accept failed; retrying", "err", err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		wg.Go(func() { handle(c) })
	}
}

// IsTemporary reports whether an Accept error is worth retrying, as
// net/http's Server decides it: running out of file descriptors or buffers,
// or a connection aborted before it was accepted.
func IsTemporary(err error) bool {
	te, ok := errors.AsType[interface {
		error
		Temporary() bool
	}](err)
	return ok && te.Temporary()
}
