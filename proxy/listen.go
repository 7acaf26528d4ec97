package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/swarmvpn/swarmvpn/internal/listener"
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

	return listener.Accept(ctx, ln, &wg, log, func(c net.Conn) {
		defer closeOnDone(ctx, c)()
		defer c.Close()
		handle(ctx, c)
	})
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
