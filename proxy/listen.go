package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// serveConns accepts connections on ln and runs handle for each in its own
// goroutine, until ctx ends or Accept fails with an error that is not
// temporary. The ctx given to handle ends when serveConns starts to return.
//
// When serveConns returns, ln and every connection it accepted are closed and
// every handle has returned. It returns nil when ctx ended, else the error
// from Accept.
func serveConns(ctx context.Context, ln net.Listener, log *slog.Logger,
	handle func(ctx context.Context, c net.Conn)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer closeOnDone(ctx, ln)()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: it closes live connections

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !isTemporary(err) {
				ln.Close()
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
			log.Warn("accept failed; retrying", "err", err)
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
		wg.Go(func() {
			defer closeOnDone(ctx, c)()
			defer c.Close()
			handle(ctx, c)
		})
	}
}

// isTemporary reports whether an Accept error is worth retrying, as
// net/http's Server decides it: running out of file descriptors or buffers,
// or a connection aborted before it was accepted.
func isTemporary(err error) bool {
	te, ok := errors.AsType[interface {
		error
		Temporary() bool
	}](err)
	return ok && te.Temporary()
}

// closeOnDone closes c when ctx ends. The release function it returns undoes
// that, or, when the close has already begun, waits for it to finish: no
// goroutine outlives the caller.
func closeOnDone(ctx context.Context, c io.Closer) (release func()) {
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		c.Close()
	})
	return func() {
		if !stop() {
			<-done
		}
	}
}
