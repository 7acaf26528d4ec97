package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// tempError is a temporary Accept error, like EMFILE.
type tempError struct{}

func (tempError) Error() string   { return "too many open files" }
func (tempError) Timeout() bool   { return false }
func (tempError) Temporary() bool { return true }

var errBoom = errors.New("boom")

// faultyListener returns the errors in errs, in order, from the Accept
// calls whose index they have (nil: a real Accept).
type faultyListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (l *faultyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	var err error
	if len(l.errs) > 0 {
		err, l.errs = l.errs[0], l.errs[1:]
	}
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return l.Listener.Accept()
}

func newSOCKS(t *testing.T) func(context.Context, net.Listener) error {
	s, err := NewSOCKS(SOCKSConfig{Dialer: &net.Dialer{}})
	if err != nil {
		t.Fatal(err)
	}
	return s.Serve
}

func newHTTP(t *testing.T) func(context.Context, net.Listener) error {
	h, err := NewHTTP(HTTPConfig{Dialer: &net.Dialer{}})
	if err != nil {
		t.Fatal(err)
	}
	return h.Serve
}

// Temporary Accept errors are retried: the server still serves after them.
func TestServeRetriesTemporaryAcceptErrors(t *testing.T) {
	checkLeaks(t)
	target := startTarget(t, "127.0.0.1:0", echo)
	ln := &faultyListener{Listener: listen(t, "127.0.0.1:0"), errs: []error{tempError{}, tempError{}, tempError{}}}
	proxy, _ := serveOn(t, ln, newSOCKS(t))
	c, code := socksConnect(t, proxy, target)
	if code != 0 {
		t.Fatalf("reply %d", code)
	}
	c.Write([]byte("still here"))
	c.CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "still here" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// Any other Accept error ends Serve with that error, after closing the
// connections it had accepted.
func TestServeReturnsAcceptError(t *testing.T) {
	for name, fn := range map[string]func(*testing.T) func(context.Context, net.Listener) error{
		"socks5": newSOCKS, "http": newHTTP,
	} {
		t.Run(name, func(t *testing.T) {
			checkLeaks(t)
			inner := listen(t, "127.0.0.1:0")
			// Connected before Serve starts: the first Accept returns it,
			// the second fails.
			c, err := net.Dial("tcp", inner.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ln := &faultyListener{Listener: inner, errs: []error{nil, errBoom}}
			err = fn(t)(t.Context(), ln)
			if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("Serve: %v, want %v", err, errBoom)
			}
			c.SetReadDeadline(time.Now().Add(time.Minute)) // a guard
			if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
				t.Errorf("accepted conn: %v, want EOF", err)
			}
			if _, err := net.Dial("tcp", inner.Addr().String()); err == nil {
				t.Error("listener still open")
			}
		})
	}
}

// Serve returns only after every handler has returned, even one whose
// Dialer is slow to notice the cancellation. In a synctest bubble, over
// net.Pipe, "Serve has not returned" is a fact, not a timing guess.
func TestServeWaitsForHandlers(t *testing.T) {
	tests := []struct {
		name    string
		newServ func(Dialer) (func(context.Context, net.Listener) error, error)
		request []byte
	}{
		{"socks5", func(d Dialer) (func(context.Context, net.Listener) error, error) {
			s, err := NewSOCKS(SOCKSConfig{Dialer: d})
			if err != nil {
				return nil, err
			}
			return s.Serve, nil
		}, append(append([]byte(nil), greeting...), connectReq(t, "192.0.2.1:1")...)},
		{"http", func(d Dialer) (func(context.Context, net.Listener) error, error) {
			h, err := NewHTTP(HTTPConfig{Dialer: d})
			if err != nil {
				return nil, err
			}
			return h.Serve, nil
		}, []byte("CONNECT 192.0.2.1:1 HTTP/1.1\r\nHost: 192.0.2.1:1\r\n\r\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				slow := dialFunc(func(ctx context.Context, _, _ string) (net.Conn, error) {
					<-ctx.Done()
					<-release
					return nil, ctx.Err()
				})
				serveFn, err := tt.newServ(slow)
				if err != nil {
					t.Fatal(err)
				}
				ln := &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
				ctx, cancel := context.WithCancel(t.Context())
				served := make(chan error, 1)
				go func() { served <- serveFn(ctx, ln) }()

				client, server := net.Pipe()
				defer client.Close()
				ln.conns <- server
				go client.Write(tt.request)
				go io.Copy(io.Discard, client)
				synctest.Wait() // the dial has begun

				cancel()
				synctest.Wait()
				select {
				case err := <-served:
					t.Fatalf("Serve returned (%v) while a handler was still dialing", err)
				default:
				}
				close(release)
				if err := <-served; err != nil {
					t.Fatalf("Serve: %v", err)
				}
			})
		})
	}
}
