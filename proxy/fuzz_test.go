package proxy

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// memConn is a connection whose peer has sent in and then closed: reads
// return in, then EOF; writes are collected. A client's memConn never
// blocks, so a fuzz iteration over it cannot hang.
type memConn struct {
	r      *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	once   sync.Once
	closed chan struct{}

	// spoken, when not nil, holds reads back until the first Write,
	// CloseWrite or Close: the peer is a server, which answers a request.
	spoken chan struct{}
	speak  sync.Once
}

func newMemConn(in []byte) *memConn {
	return &memConn{r: bytes.NewReader(in), closed: make(chan struct{})}
}

// newServerConn is a memConn whose peer sends in only once it has been sent
// something (or half-closed, or closed). Sooner, an HTTP transport would take
// in for an unsolicited response, drop it and answer 502 instead.
func newServerConn(in []byte) *memConn {
	c := newMemConn(in)
	c.spoken = make(chan struct{})
	return c
}

// spoke releases a server conn's reads.
func (c *memConn) spoke() {
	if c.spoken != nil {
		c.speak.Do(func() { close(c.spoken) })
	}
}

func (c *memConn) Read(p []byte) (int, error) {
	if c.spoken != nil {
		<-c.spoken
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.r.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	defer c.spoke()
	return c.out.Write(p)
}

func (c *memConn) output() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	c.spoke()
	return nil
}

func (c *memConn) CloseWrite() error                { c.spoke(); return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1080} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// cannedResponse is what a fuzz target "sends": an HTTP response, so that a
// forwarded request gets one, and plain bytes for a tunnel.
const cannedResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// fuzzDialer answers by port: a multiple of 9 connects to a server conn that
// answers with cannedResponse; any other port fails with status port%9.
var fuzzDialer = dialFunc(func(_ context.Context, _, addr string) (net.Conn, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(p)
	if port%9 == 0 {
		return newServerConn([]byte(cannedResponse)), nil
	}
	return nil, &wire.Error{Status: wire.Status(port % 9)}
})

// FuzzSOCKSHandshake feeds arbitrary bytes as a client's whole input to one
// SOCKS5 connection, to a server without and one with authentication (and
// an HTTP proxy beside it).
func FuzzSOCKSHandshake(f *testing.F) {
	req := func(dst string) []byte { return connectReq(f, dst) }
	auth := []byte{5, 1, 2, 1, 5, 'a', 'l', 'i', 'c', 'e', 6, 's', '3', 'c', 'r', 'e', 't'}
	for _, seed := range [][]byte{
		append(append([]byte{}, greeting...), req("192.0.2.1:9")...),
		append(append(append([]byte{}, greeting...), req("192.0.2.1:18")...), "pipelined data"...),
		append(append([]byte{}, greeting...), req("[2001:db8::1]:443")...),
		append(append([]byte{}, greeting...), req("tracker.example:6969")...),
		append(append([]byte{}, greeting...), req("192.0.2.1:5")...),
		append(append([]byte{}, auth...), req("example.org:27")...),
		append(append([]byte{}, greeting...), 5, 2, 0, 1, 192, 0, 2, 1, 0, 80),
		append(append([]byte{}, greeting...), 5, 3, 0, 1, 0, 0, 0, 0, 0, 0),
		append(append([]byte{}, greeting...), 5, 1, 0, 3, 0, 0, 80),
		append(append([]byte{}, greeting...), 5, 1, 0, 9),
		{5, 1},
		{4, 1, 0, 80, 192, 0, 2, 1, 0},
		{},
		[]byte("GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n"),
		[]byte("CONNECT example.org:443 HTTP/1.1\r\n"),
	} {
		f.Add(seed)
	}
	var servers []*SOCKS
	for _, cfg := range []SOCKSConfig{
		{Dialer: fuzzDialer},
		{Dialer: fuzzDialer, Username: "alice", Password: "s3cret", HTTPAddr: "127.0.0.1:8118"},
	} {
		s, err := NewSOCKS(cfg)
		if err != nil {
			f.Fatal(err)
		}
		servers = append(servers, s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, s := range servers {
			c := newMemConn(in)
			s.serveConn(t.Context(), c)
			out := c.output()
			switch {
			case len(out) == 0 || out[0] == 5:
			case in[0] >= 'A' && in[0] <= 'Z' && bytes.HasPrefix(out, []byte("HTTP/1.1 400 ")):
				// an HTTP request to the SOCKS5 port, told where it is
			default:
				t.Fatalf("sent %.20q, want the version 5 first (or a 400 to what looks like HTTP)", out)
			}
		}
	})
}

// chanListener hands out the connections sent on conns.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8118} }

// FuzzHTTPRequest feeds arbitrary bytes as a client's whole input to one
// connection of a running HTTP proxy.
func FuzzHTTPRequest(f *testing.F) {
	for _, seed := range []string{
		"CONNECT 192.0.2.1:9 HTTP/1.1\r\nHost: 192.0.2.1:9\r\n\r\ntunnelled bytes",
		"CONNECT tracker.example:443 HTTP/1.1\r\nHost: tracker.example:443\r\n\r\n",
		"CONNECT [2001:db8::1]:25 HTTP/1.1\r\nHost: [2001:db8::1]:25\r\n\r\n",
		"CONNECT example.org HTTP/1.1\r\nHost: example.org\r\n\r\n",
		"GET http://example.org:18/ HTTP/1.1\r\nHost: example.org\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n",
		"GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\nProxy-Connection: keep-alive\r\nUpgrade: websocket\r\n\r\n",
		"POST http://example.org:27/upload?a=1;b=2 HTTP/1.1\r\nHost: example.org\r\nContent-Length: 5\r\n\r\nhello",
		"POST http://example.org:36/ HTTP/1.1\r\nHost: example.org\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET http://example.org:9/ HTTP/1.0\r\n\r\nGET http://example.org:9/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"GET ftp://example.org/file HTTP/1.1\r\nHost: example.org\r\n\r\n",
		"GET http:///nohost HTTP/1.1\r\nHost: x\r\n\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	h, err := NewHTTP(HTTPConfig{Dialer: fuzzDialer})
	if err != nil {
		f.Fatal(err)
	}
	ln := &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.Serve(ctx, ln) }()
	f.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			f.Errorf("Serve: %v", err)
		}
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := newMemConn(in)
		ln.conns <- c
		select {
		case <-c.closed:
		case <-time.After(10 * time.Second): // a guard against a hang
			t.Fatal("the proxy did not finish with the connection")
		}
		if out := c.output(); len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.")) {
			t.Fatalf("sent %.40q, not an HTTP/1.x response", out)
		}
	})
}
