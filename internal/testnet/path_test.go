package testnet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"
)

func TestMain(m *testing.M) {
	if os.Getenv(soakEchoEnv) != "" {
		soakEchoMain() // this process is the soak's echo target
		return
	}
	goleak.VerifyTestMain(m)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// exchange writes up on c, half-closes, reads to EOF, and checks that the
// target (a Digest target) saw exactly up and replied with down.
func exchange(t *testing.T, c net.Conn, up, down []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(up)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	sum := sha256.Sum256(up)
	if len(got) < 32 || !bytes.Equal(got[:32], sum[:]) {
		t.Fatal("the target received different bytes than were sent")
	}
	if !bytes.Equal(got[32:], down) {
		t.Fatalf("received %d bytes from the target, want %d identical", len(got)-32, len(down))
	}
}

func TestSOCKSWholePath(t *testing.T) {
	tp := Start(t, Options{})
	up, down := randBytes(4<<20), randBytes(4<<20)
	t4 := StartTarget(t, "127.0.0.1:0", Digest(down))
	for _, tc := range []struct{ name, addr string }{
		{"ipv4", t4.Addr},
		{"domain", "localhost:" + t4.Port()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, bound, err := SOCKS5Dial(t.Context(), tp.SOCKS, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !bound.Addr().IsLoopback() || bound.Port() == 0 {
				t.Errorf("bound address %v, want the exit's source address", bound)
			}
			exchange(t, c, up, down)
		})
	}
	t.Run("ipv6", func(t *testing.T) {
		t6 := StartTarget(t, "[::1]:0", Digest(down))
		c, _, err := SOCKS5Dial(t.Context(), tp.SOCKS, t6.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		exchange(t, c, up, down)
	})
	if n := t4.Accepted.Load(); n != 2 {
		t.Errorf("IPv4 target accepted %d connections, want 2", n)
	}
}

// TestHalfCloseBothWays: the target half-closes first and the client still
// sends after that; the client's half-close then reaches the target.
func TestHalfCloseBothWays(t *testing.T) {
	tp := Start(t, Options{})
	late := make(chan string, 1)
	tg := StartTarget(t, "127.0.0.1:0", func(c net.Conn) {
		io.WriteString(c, "hello")
		c.(*net.TCPConn).CloseWrite()
		got, _ := io.ReadAll(c) // ends with the client's half-close
		late <- string(got)
	})
	c, _, err := SOCKS5Dial(t.Context(), tp.SOCKS, tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c) // ends when the target half-closes
	if err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v; want hello then EOF", got, err)
	}
	if _, err := io.WriteString(c, "late data"); err != nil {
		t.Fatalf("write after the far side's half-close: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case s := <-late:
		if s != "late data" {
			t.Fatalf("target read %q after its own half-close, want %q", s, "late data")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client's half-close never reached the target")
	}
}

func TestHTTPWholePath(t *testing.T) {
	tp := Start(t, Options{})
	up, down := randBytes(3<<20), randBytes(3<<20)

	t.Run("connect", func(t *testing.T) {
		tg := StartTarget(t, "127.0.0.1:0", Digest(down))
		c, err := net.Dial("tcp", tp.HTTP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", tg.Addr, tg.Addr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT: %v, %v", resp, err)
		}
		exchange(t, &bufferedConn{Conn: c, r: br}, up, down)
	})

	t.Run("plain", func(t *testing.T) {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in, _ := io.ReadAll(r.Body)
			sum := sha256.Sum256(in)
			w.Header().Set("X-Sum", fmt.Sprintf("%x", sum))
			w.Write(down)
		})}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		go srv.Serve(ln)
		defer srv.Close()
		proxyURL, _ := url.Parse("http://" + tp.HTTP)
		tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Post("http://localhost:"+portOf(ln.Addr())+"/x", "application/octet-stream", bytes.NewReader(up))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Sum") != fmt.Sprintf("%x", sha256.Sum256(up)) || !bytes.Equal(body, down) {
			t.Fatalf("status %d: upload intact %v, %d bytes down", resp.StatusCode,
				resp.Header.Get("X-Sum") == fmt.Sprintf("%x", sha256.Sum256(up)), len(body))
		}
	})
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *bufferedConn) CloseWrite() error          { return c.Conn.(*net.TCPConn).CloseWrite() }

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

// TestPolicyRefusalsReachTheApp: every refusal at the exit arrives as the
// right SOCKS5 reply, and the target never sees a connection.
func TestPolicyRefusalsReachTheApp(t *testing.T) {
	tp := Start(t, Options{Policy: &policy.Policy{}}) // default policy
	tg := StartTarget(t, "127.0.0.1:0", Echo)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	tests := []struct {
		addr string
		want int
	}{
		{tg.Addr, 2},                           // loopback
		{"localhost:" + tg.Port(), 2},          // a name resolving to loopback
		{"[::ffff:127.0.0.1]:" + tg.Port(), 2}, // IPv4-mapped loopback
		{"[::1]:" + tg.Port(), 2},              // IPv6 loopback
		{"10.1.2.3:80", 2},                     // RFC 1918
		{"169.254.169.254:80", 2},              // cloud metadata
		{"192.0.2.1:25", 2},                    // SMTP
		{"no-such-name.invalid:80", 4},         // does not resolve
		{closed, 2},                            // refused by policy before refused by the host
	}
	for _, tt := range tests {
		_, _, err := SOCKS5Dial(t.Context(), tp.SOCKS, tt.addr)
		if got := ReplyCode(err); got != tt.want {
			t.Errorf("%s: reply %d (%v), want %d", tt.addr, got, err, tt.want)
		}
	}
	if n := tg.Accepted.Load(); n != 0 {
		t.Fatalf("the target saw %d connections through a refusing exit", n)
	}
}

// TestExitGoneFailsClosed: with the exit down, SOCKS5 answers network
// unreachable and HTTP 503, nothing reaches the target, and when the exit
// returns the same proxies work again without a restart.
func TestExitGoneFailsClosed(t *testing.T) {
	tp := Start(t, Options{})
	tg := StartTarget(t, "127.0.0.1:0", Digest([]byte("pong")))
	c, _, err := SOCKS5Dial(t.Context(), tp.SOCKS, tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, c, []byte("ping"), []byte("pong"))
	c.Close()

	tp.StopExit()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for range 3 {
		_, _, err := SOCKS5Dial(ctx, tp.SOCKS, tg.Addr)
		if ReplyCode(err) != 3 {
			t.Fatalf("SOCKS5 with the exit gone: %v, want reply 3 (network unreachable)", err)
		}
	}
	hc, err := net.Dial("tcp", tp.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(hc, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", tg.Addr, tg.Addr)
	resp, err := http.ReadResponse(bufio.NewReader(hc), nil)
	hc.Close()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("HTTP with the exit gone: %v, %v; want 503", resp, err)
	}
	if n := tg.Accepted.Load(); n != 1 {
		t.Fatalf("target saw %d connections, want only the one made through the exit", n)
	}

	tp.StartExit(tp.ExitAddr.Addr)
	c, _, err = SOCKS5Dial(t.Context(), tp.SOCKS, tg.Addr)
	if err != nil {
		t.Fatalf("after the exit returned: %v", err)
	}
	exchange(t, c, []byte("ping"), []byte("pong"))
	c.Close()
}

func TestThousandFlowsThroughSOCKS(t *testing.T) {
	tp := Start(t, Options{})
	tg := StartTarget(t, "127.0.0.1:0", Echo)
	var g errgroup.Group
	for i := range 1000 {
		g.Go(func() error {
			c, _, err := SOCKS5Dial(t.Context(), tp.SOCKS, tg.Addr)
			if err != nil {
				return fmt.Errorf("flow %d: %w", i, err)
			}
			defer c.Close()
			msg := fmt.Sprintf("flow %d says hello", i)
			io.WriteString(c, msg)
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil || string(got) != msg {
				return fmt.Errorf("flow %d: echoed %q, %v", i, got, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := tg.Accepted.Load(); n != 1000 {
		t.Fatalf("target accepted %d, want 1000", n)
	}
}
