package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

const bulk = 4 << 20 // bytes each way in the bulk tests

func TestSOCKSConnect(t *testing.T) {
	tests := []struct {
		name     string
		listenOn string
		// dst turns the target's address into the one asked of the proxy.
		dst func(target string) string
	}{
		{"ipv4", "127.0.0.1:0", func(a string) string { return a }},
		{"ipv6", "[::1]:0", func(a string) string { return a }},
		{"localhost", "127.0.0.1:0", func(a string) string { return withHost(a, "localhost") }},
		// A name no resolver knows: the flow works only if it reaches the
		// Dialer unresolved.
		{"unresolvable name", "127.0.0.1:0", func(a string) string { return withHost(a, "tracker.swarmvpn.invalid") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			up, down := randBytes(t, bulk), randBytes(t, bulk)
			got := make(chan [32]byte, 1)
			target := startTarget(t, tt.listenOn, exchange(down, got))

			d := dialFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
				var nd net.Dialer
				return nd.DialContext(ctx, network, target)
			})
			rec := &recorder{}
			var dialer Dialer = d
			if tt.dst(target) != target {
				dialer = rec
			}
			proxy, _ := startSOCKS(t, SOCKSConfig{Dialer: dialer})
			dst := tt.dst(target)
			c, code := socksConnect(t, proxy, dst)
			if code != 0 {
				t.Fatalf("reply %d, want 0", code)
			}
			if sum := clientExchange(t, c, c, up); sum != sha256.Sum256(down) {
				t.Error("client received other bytes than the target sent")
			}
			if sum := <-got; sum != sha256.Sum256(up) {
				t.Error("target received other bytes than the client sent")
			}
			if dialer == rec {
				if addrs := rec.got(); len(addrs) != 1 || addrs[0] != dst {
					t.Errorf("Dialer got %q, want [%q]", addrs, dst)
				}
			}
		})
	}
}

func withHost(hostport, host string) string {
	_, port, _ := net.SplitHostPort(hostport)
	return net.JoinHostPort(host, port)
}

// A client may send its greeting, request and first data in one segment:
// bytes that go-socks5 buffered past the request must reach the target.
func TestSOCKSPipelined(t *testing.T) {
	checkLeaks(t)
	target := startTarget(t, "127.0.0.1:0", echo)
	proxy, _ := startSOCKS(t, SOCKSConfig{Dialer: &net.Dialer{}})

	data := randBytes(t, 256<<10)
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var msg []byte
	msg = append(msg, greeting...)
	msg = append(msg, connectReq(t, target)...)
	msg = append(msg, data...)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg) // one write
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	br := bufio.NewReader(c)
	if m, err := readMethod(br); err != nil || m != 0 {
		t.Fatalf("method %d, %v", m, err)
	}
	if code, _, err := readReply(br); err != nil || code != 0 {
		t.Fatalf("reply %d, %v", code, err)
	}
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echoed %d bytes, want the %d sent", len(got), len(data))
	}
}

// The client half-closes; the target sees EOF and still answers.
func TestSOCKSHalfClose(t *testing.T) {
	checkLeaks(t)
	target := startTarget(t, "127.0.0.1:0", func(c *net.TCPConn) {
		req, err := io.ReadAll(c) // to EOF: the client's CloseWrite
		if err != nil {
			return
		}
		c.Write(append([]byte("reply to "), req...))
	})
	proxy, _ := startSOCKS(t, SOCKSConfig{Dialer: &net.Dialer{}})
	c, code := socksConnect(t, proxy, target)
	if code != 0 {
		t.Fatalf("reply %d", code)
	}
	if _, err := c.Write([]byte("question")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "reply to question" {
		t.Fatalf("got %q", got)
	}
}

// statusByPort is a Dialer that fails with the status equal to the port it
// is asked for, so one server serves the whole table.
var statusByPort = dialFunc(func(_ context.Context, _, addr string) (net.Conn, error) {
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return nil, fmt.Errorf("test dial: %w", &wire.Error{Status: wire.Status(n), Err: errTest})
})

func TestSOCKSErrorReplies(t *testing.T) {
	checkLeaks(t)
	proxy, _ := startSOCKS(t, SOCKSConfig{Dialer: statusByPort})
	for st := wire.StatusGeneralFailure; st <= wire.StatusAddrTypeUnsupported; st++ {
		for _, host := range []string{"192.0.2.1", "2001:db8::1", "example.org"} {
			dst := net.JoinHostPort(host, strconv.Itoa(int(st)))
			if _, code := socksConnect(t, proxy, dst); code != byte(st) {
				t.Errorf("%s: status %d (%v): reply %d", dst, st, st, code)
			}
		}
	}
	// An error that claims success, or a status SOCKS5 lacks: general failure.
	for _, port := range []string{"0", "9", "255"} {
		if _, code := socksConnect(t, proxy, "192.0.2.1:"+port); code != 1 {
			t.Errorf("status %s: reply %d, want 1", port, code)
		}
	}
}

func TestSOCKSRefused(t *testing.T) {
	checkLeaks(t)
	ln := listen(t, "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	proxy, _ := startSOCKS(t, SOCKSConfig{Dialer: &net.Dialer{}})
	if _, code := socksConnect(t, proxy, closed); code != byte(wire.StatusConnectionRefused) {
		t.Fatalf("reply %d, want 5", code)
	}
}

// Requests that never reach the Dialer.
func TestSOCKSRequestRejected(t *testing.T) {
	checkLeaks(t)
	rec := &recorder{}
	proxy, _ := startSOCKS(t, SOCKSConfig{Dialer: rec})
	tests := []struct {
		name string
		req  []byte
		want byte
	}{
		{"bind", []byte{5, 2, 0, 1, 192, 0, 2, 1, 0, 80}, 7},
		{"udp associate", []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}, 7},
		{"unknown command", []byte{5, 9, 0, 1, 192, 0, 2, 1, 0, 80}, 7},
		{"unknown address type", []byte{5, 1, 0, 9}, 8}, // go-socks5 reads no further
		{"empty name", []byte{5, 1, 0, 3, 0, 0, 80}, 4},
		{"name with colon", []byte{5, 1, 0, 3, 3, 'a', ':', 'b', 0, 80}, 4},
		{"name with NUL", []byte{5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(append(append([]byte(nil), greeting...), tt.req...)); err != nil {
				t.Fatal(err)
			}
			if _, err := readMethod(c); err != nil {
				t.Fatal(err)
			}
			code, _, err := readReply(c)
			if err != nil || code != tt.want {
				t.Fatalf("reply %d, %v; want %d", code, err, tt.want)
			}
			if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
				t.Fatalf("after the reply: %q, %v; want EOF", rest, err)
			}
		})
	}
	if got := rec.got(); len(got) != 0 {
		t.Errorf("Dialer called for %q", got)
	}
}

func TestSOCKSAuth(t *testing.T) {
	checkLeaks(t)
	target := startTarget(t, "127.0.0.1:0", echo)
	proxy, _ := startSOCKS(t, SOCKSConfig{Dialer: &net.Dialer{}, Username: "alice", Password: "s3cret"})

	userPass := func(user, pass string) []byte {
		b := []byte{1, byte(len(user))}
		b = append(b, user...)
		b = append(b, byte(len(pass)))
		return append(b, pass...)
	}
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", proxy)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("correct", func(t *testing.T) {
		c := dial(t)
		msg := append([]byte{5, 2, 0, 2}, userPass("alice", "s3cret")...)
		msg = append(msg, connectReq(t, target)...)
		msg = append(msg, "hello"...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if m, err := readMethod(c); err != nil || m != 2 {
			t.Fatalf("method %d, %v; want 2", m, err)
		}
		var st [2]byte
		if _, err := io.ReadFull(c, st[:]); err != nil || st != [2]byte{1, 0} {
			t.Fatalf("auth reply %v, %v", st, err)
		}
		if code, _, err := readReply(c); err != nil || code != 0 {
			t.Fatalf("reply %d, %v", code, err)
		}
		if got, err := io.ReadAll(c); err != nil || string(got) != "hello" {
			t.Fatalf("echo %q, %v", got, err)
		}
	})
	for _, creds := range [][2]string{{"alice", "wrong"}, {"bob", "s3cret"}, {"alic", "s3cret"}, {"alice", "s3cret!"}} {
		t.Run("wrong "+creds[0]+"/"+creds[1], func(t *testing.T) {
			c := dial(t)
			msg := append([]byte{5, 1, 2}, userPass(creds[0], creds[1])...)
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if m, err := readMethod(c); err != nil || m != 2 {
				t.Fatalf("method %d, %v; want 2", m, err)
			}
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, []byte{1, 1}) {
				t.Fatalf("after auth: % x, want 01 01 then EOF", got)
			}
		})
	}
	t.Run("no auth offered", func(t *testing.T) {
		c := dial(t)
		if _, err := c.Write([]byte{5, 1, 0}); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, []byte{5, 0xff}) {
			t.Fatalf("got % x, %v; want 05 ff then EOF", got, err)
		}
	})
}

func TestNewSOCKSValidates(t *testing.T) {
	long := strings.Repeat("x", 256)
	for _, cfg := range []SOCKSConfig{
		{},
		{Dialer: &net.Dialer{}, Username: "u"},
		{Dialer: &net.Dialer{}, Password: "p"},
		{Dialer: &net.Dialer{}, Username: long, Password: "p"},
		{Dialer: &net.Dialer{}, Username: "u", Password: long},
		{Dialer: &net.Dialer{}, HandshakeTimeout: -time.Second},
	} {
		if _, err := NewSOCKS(cfg); err == nil {
			t.Errorf("NewSOCKS(%+v): no error", cfg)
		}
	}
}

// A client that stops part way through the handshake is disconnected after
// HandshakeTimeout.
func TestSOCKSHandshakeTimeout(t *testing.T) {
	checkLeaks(t)
	proxy, _ := startSOCKS(t, SOCKSConfig{Dialer: &net.Dialer{}, HandshakeTimeout: 100 * time.Millisecond})
	for _, tt := range []struct {
		name      string
		send, got []byte
	}{
		{"silent", nil, nil},
		{"half a greeting", []byte{5, 1}, nil},
		{"no request", greeting, []byte{5, 0}},
		{"half a request", append(append([]byte(nil), greeting...), 5, 1, 0, 1, 127), []byte{5, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(time.Minute)) // a guard, not the assertion
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("want EOF, got %v", err)
			}
			if !bytes.Equal(got, tt.got) {
				t.Fatalf("got % x, want % x", got, tt.got)
			}
		})
	}
}

// In a synctest bubble, over net.Pipe: the handshake deadline closes a slow
// client exactly when it expires, and no longer applies once the request
// has arrived.
func TestSOCKSHandshakeDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		targets := make(chan net.Conn, 1)
		pipeDialer := dialFunc(func(context.Context, string, string) (net.Conn, error) {
			c, s := net.Pipe()
			targets <- s
			return c, nil
		})
		s, err := NewSOCKS(SOCKSConfig{Dialer: pipeDialer, HandshakeTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		serveOne := func() (client net.Conn, done chan struct{}) {
			client, server := net.Pipe()
			done = make(chan struct{})
			go func() {
				defer close(done)
				defer server.Close()
				s.serveConn(ctx, server)
			}()
			return client, done
		}

		// Slow client: still served just before the deadline, gone at it.
		slow, done := serveOne()
		defer slow.Close()
		slow.Write([]byte{5})
		time.Sleep(time.Second - time.Nanosecond)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("closed before the handshake timeout")
		default:
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("still open after the handshake timeout")
		}

		// A flow outlives the handshake timeout.
		c, done := serveOne()
		defer c.Close()
		c.Write(greeting)
		if m, err := readMethod(c); err != nil || m != 0 {
			t.Fatalf("method %d, %v", m, err)
		}
		c.Write(connectReq(t, "192.0.2.1:80"))
		if code, _, err := readReply(c); err != nil || code != 0 {
			t.Fatalf("reply %d, %v", code, err)
		}
		target := <-targets
		defer target.Close()
		time.Sleep(time.Hour)
		go c.Write([]byte("late"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(target, buf); err != nil || string(buf) != "late" {
			t.Fatalf("target read %q, %v", buf, err)
		}
		go target.Write([]byte("back"))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "back" {
			t.Fatalf("client read %q, %v", buf, err)
		}
		c.Close()
		<-done
	})
}

// Serve, cancelled with flows in every state, closes them all and returns.
func TestSOCKSServeStops(t *testing.T) {
	checkLeaks(t)
	hold := holdTarget(t)
	dialing := make(chan struct{}, 1)
	d := dialFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == "192.0.2.1:1" { // blocks until cancelled
			dialing <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		var nd net.Dialer
		return nd.DialContext(ctx, network, addr)
	})
	proxy, stop := startSOCKS(t, SOCKSConfig{Dialer: d})

	var clients []net.Conn
	for range 3 {
		c, code := socksConnect(t, proxy, hold)
		if code != 0 {
			t.Fatalf("reply %d", code)
		}
		if _, err := c.Write([]byte("data")); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	pending, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	pending.Write(append(append([]byte(nil), greeting...), connectReq(t, "192.0.2.1:1")...))
	<-dialing
	half, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write([]byte{5})
	clients = append(clients, pending, half)

	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(time.Minute)) // a guard
		if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
			t.Errorf("client %d: %v, want EOF", i, err)
		}
	}
	if _, err := net.Dial("tcp", proxy); err == nil {
		t.Error("listener still accepts after Serve returned")
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func TestSOCKSConcurrentFlows(t *testing.T) {
	checkLeaks(t)
	const flows = 1000
	target := startTarget(t, "127.0.0.1:0", echo)
	proxy, _ := startSOCKS(t, SOCKSConfig{Dialer: &net.Dialer{}})

	var wg sync.WaitGroup
	errs := make(chan error, flows)
	for i := range flows {
		wg.Go(func() {
			errs <- func() error {
				c, err := net.Dial("tcp", proxy)
				if err != nil {
					return err
				}
				defer c.Close()
				data := fmt.Appendf(nil, "flow %d:", i)
				data = append(data, randBytes(t, 8<<10)...)
				msg := append(append(append([]byte(nil), greeting...), connectReq(t, target)...), data...)
				if _, err := c.Write(msg); err != nil {
					return err
				}
				if err := c.(*net.TCPConn).CloseWrite(); err != nil {
					return err
				}
				br := bufio.NewReader(c)
				if _, err := readMethod(br); err != nil {
					return err
				}
				if code, _, err := readReply(br); err != nil || code != 0 {
					return fmt.Errorf("reply %d, %v", code, err)
				}
				got, err := io.ReadAll(br)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, data) {
					return fmt.Errorf("flow %d: echoed %d bytes, not the %d sent", i, len(got), len(data))
				}
				return nil
			}()
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if err != nil {
			n++
			if n <= 5 {
				t.Error(err)
			}
		}
	}
	if n > 0 {
		t.Errorf("%d of %d flows failed", n, flows)
	}
}
