package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// checkLeaks fails the test if, once every other cleanup has run, more
// goroutines are running than when it was called. Call it first in a test so
// that its cleanup runs last. Goroutines end asynchronously after their
// connections close, so it polls, for a bounded time.
func checkLeaks(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= base {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines still running (%d before the test):\n%s", n, base, buf)
				return
			}
			runtime.Gosched()
			<-time.After(5 * time.Millisecond) // bounded poll, not synchronisation
		}
	})
}

// eventually polls cond, for a bounded time, until it holds; for effects
// that happen asynchronously after the event the test waited for.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("never happened: %s", what)
			return
		}
		<-time.After(5 * time.Millisecond) // bounded poll, not synchronisation
	}
}

// holdTarget reads a flow to its end and then keeps the connection open
// until the test ends: a flow through it ends only if the proxy closes it.
func holdTarget(t *testing.T) string {
	release := make(chan struct{})
	addr := startTarget(t, "127.0.0.1:0", func(c *net.TCPConn) {
		io.Copy(io.Discard, c)
		<-release
	})
	t.Cleanup(func() { close(release) }) // runs before startTarget's cleanup
	return addr
}

// dialFunc makes a function a Dialer.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f dialFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

// failDialer fails every dial with err.
func failDialer(err error) Dialer {
	return dialFunc(func(context.Context, string, string) (net.Conn, error) { return nil, err })
}

// recorder is a Dialer that records every address it is asked for, then
// dials the same port on 127.0.0.1, whatever the host was.
type recorder struct {
	mu    sync.Mutex
	addrs []string
}

func (r *recorder) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	r.mu.Lock()
	r.addrs = append(r.addrs, addr)
	r.mu.Unlock()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.addrs...)
}

// listen listens on addr ("127.0.0.1:0" or "[::1]:0"); it skips the test
// when the address family is missing.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if addr == "[::1]:0" {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serve runs a proxy's Serve on a fresh 127.0.0.1 listener. It returns the
// address and a stop function that cancels Serve and returns Serve's error;
// cleanup stops it too and fails the test if Serve did not return nil.
func serve(t *testing.T, serveFn func(context.Context, net.Listener) error) (addr string, stop func() error) {
	t.Helper()
	return serveOn(t, listen(t, "127.0.0.1:0"), serveFn)
}

// serveOn is serve on a given listener.
func serveOn(t *testing.T, ln net.Listener, serveFn func(context.Context, net.Listener) error) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveFn(ctx, ln) }()
	stop = sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), stop
}

func startSOCKS(t *testing.T, cfg SOCKSConfig) (addr string, stop func() error) {
	t.Helper()
	s, err := NewSOCKS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, s.Serve)
}

func startHTTP(t *testing.T, cfg HTTPConfig) (addr string, stop func() error) {
	t.Helper()
	h, err := NewHTTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, h.Serve)
}

// startTarget accepts TCP connections on addr and runs handle for each. At
// cleanup it closes the listener and every connection, and waits for the
// handlers.
func startTarget(t *testing.T, addr string, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln := listen(t, addr)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echo sends back what it reads, then half-closes.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// exchange is a target that sends out and half-closes while it reads the
// client's bytes to the end, then reports their hash on got.
func exchange(out []byte, got chan<- [32]byte) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		var wg sync.WaitGroup
		wg.Go(func() {
			c.Write(out)
			c.CloseWrite()
		})
		h := sha256.New()
		io.Copy(h, c)
		wg.Wait()
		got <- [32]byte(h.Sum(nil))
	}
}

// clientExchange sends out on c and half-closes while reading everything c
// returns; it returns the hash of what was read.
func clientExchange(t *testing.T, c net.Conn, r io.Reader, out []byte) [32]byte {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Errorf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Errorf("write: %v", err)
	}
	return [32]byte(h.Sum(nil))
}

// --- a minimal SOCKS5 client -----------------------------------------------

// socksAddr encodes "host:port" as SOCKS5 ATYP, address and port; a host
// that is not an IP literal is sent as a domain name.
func socksAddr(t testing.TB, hostport string) []byte {
	t.Helper()
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		b = append(b, 1)
		b = append(b, ip.AsSlice()...)
	} else if err == nil {
		b = append(b, 4)
		b = append(b, ip.AsSlice()...)
	} else {
		b = append(b, 3, byte(len(host)))
		b = append(b, host...)
	}
	return binary.BigEndian.AppendUint16(b, uint16(port))
}

// greeting is a method request offering no authentication.
var greeting = []byte{5, 1, 0}

// connectReq is a CONNECT request for hostport.
func connectReq(t testing.TB, hostport string) []byte {
	return append([]byte{5, 1, 0}, socksAddr(t, hostport)...)
}

// readMethod reads the server's method choice.
func readMethod(r io.Reader) (byte, error) {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("read method reply: %w", err)
	}
	if b[0] != 5 {
		return 0, fmt.Errorf("method reply version %d", b[0])
	}
	return b[1], nil
}

// readReply reads a SOCKS5 reply and returns its code and bound address.
func readReply(r io.Reader) (byte, netip.AddrPort, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("read reply: %w", err)
	}
	if h[0] != 5 {
		return 0, netip.AddrPort{}, fmt.Errorf("reply version %d", h[0])
	}
	var n int
	switch h[3] {
	case 1:
		n = 4
	case 4:
		n = 16
	default:
		return 0, netip.AddrPort{}, fmt.Errorf("reply address type %d", h[3])
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("read reply address: %w", err)
	}
	ip, _ := netip.AddrFromSlice(b[:n])
	return h[1], netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[n:])), nil
}

// socksConnect opens a CONNECT flow to dst through the SOCKS5 proxy at proxy
// (no authentication) and returns the connection and reply code. The
// connection is closed at cleanup.
func socksConnect(t testing.TB, proxy, dst string) (*net.TCPConn, byte) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(append(append([]byte(nil), greeting...), connectReq(t, dst)...)); err != nil {
		t.Fatal(err)
	}
	if m, err := readMethod(c); err != nil || m != 0 {
		t.Fatalf("method %d, %v", m, err)
	}
	code, _, err := readReply(c)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn), code
}

// readHead reads an HTTP response head (status line and headers) from br
// and returns the status line.
func readHead(br *bufio.Reader) (string, error) {
	status, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if line == "\r\n" {
			return status, nil
		}
	}
}

var errTest = errors.New("test")
