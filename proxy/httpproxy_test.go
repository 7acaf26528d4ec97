package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

func TestHTTPConnect(t *testing.T) {
	tests := []struct {
		name, listenOn string
		host           string // "" keeps the target's own
	}{
		{"ipv4", "127.0.0.1:0", ""},
		{"ipv6", "[::1]:0", ""},
		{"name", "127.0.0.1:0", "tracker.swarmvpn.invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			up, down := randBytes(t, bulk), randBytes(t, bulk)
			got := make(chan [32]byte, 1)
			target := startTarget(t, tt.listenOn, exchange(down, got))
			var d Dialer = &net.Dialer{}
			rec := &recorder{}
			dst := target
			if tt.host != "" {
				d, dst = rec, withHost(target, tt.host)
			}
			proxy, _ := startHTTP(t, HTTPConfig{Dialer: d})

			c, err := net.Dial("tcp", proxy)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			// The head and the first data in one write: that data is in
			// the server's buffer when the connection is hijacked.
			msg := []byte("CONNECT " + dst + " HTTP/1.1\r\nHost: " + dst + "\r\n\r\n")
			msg = append(msg, up...)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(msg)
				if err == nil {
					err = c.(*net.TCPConn).CloseWrite()
				}
				errc <- err
			}()
			br := bufio.NewReader(c)
			status, err := readHead(br)
			if err != nil {
				t.Fatal(err)
			}
			if status != "HTTP/1.1 200 Connection established\r\n" {
				t.Fatalf("status %q", status)
			}
			h := sha256.New()
			if _, err := io.Copy(h, br); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if [32]byte(h.Sum(nil)) != sha256.Sum256(down) {
				t.Error("client received other bytes than the target sent")
			}
			if <-got != sha256.Sum256(up) {
				t.Error("target received other bytes than the client sent")
			}
			if tt.host != "" {
				if addrs := rec.got(); len(addrs) != 1 || addrs[0] != dst {
					t.Errorf("Dialer got %q, want [%q]", addrs, dst)
				}
			}
		})
	}
}

// origin is an httptest server that records each request's headers and
// query, answers with the hash of the body it received, hop-by-hop headers
// of its own, and a body of resp.
type origin struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
	queries []string
}

func startOrigin(t *testing.T, resp []byte) *origin {
	o := &origin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		o.mu.Lock()
		o.headers = append(o.headers, r.Header.Clone())
		o.queries = append(o.queries, r.URL.RawQuery)
		o.mu.Unlock()
		w.Header().Set("X-Body-Sha256", hex.EncodeToString(h.Sum(nil)))
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "secret")
		w.Header().Set("X-Origin", "yes")
		w.Write(resp)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) last() (http.Header, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.headers) == 0 {
		return nil, ""
	}
	return o.headers[len(o.headers)-1], o.queries[len(o.queries)-1]
}

// checkResponse checks what the proxy returned from the origin.
func checkResponse(t *testing.T, resp *http.Response, sent, want []byte) {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s: %s", resp.Status, body)
	}
	if !bytes.Equal(body, want) {
		t.Errorf("body: %d bytes, not the %d the origin sent", len(body), len(want))
	}
	sum := sha256.Sum256(sent)
	if got := resp.Header.Get("X-Body-Sha256"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("origin received another body than the one sent")
	}
	if resp.Header.Get("X-Origin") != "yes" {
		t.Errorf("end-to-end response header lost: %v", resp.Header)
	}
	if v, ok := resp.Header["X-Resp-Hop"]; ok {
		t.Errorf("response header named in Connection reached the client: %q", v)
	}
}

func TestHTTPForward(t *testing.T) {
	checkLeaks(t)
	up, down := randBytes(t, bulk), randBytes(t, bulk)
	o := startOrigin(t, down)
	originHost := strings.TrimPrefix(o.URL, "http://")
	proxy, _ := startHTTP(t, HTTPConfig{Dialer: &net.Dialer{}})

	t.Run("raw POST with hop-by-hop headers", func(t *testing.T) {
		c, err := net.Dial("tcp", proxy)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		head := "POST http://" + originHost + "/upload?a=1;b=2 HTTP/1.1\r\n" +
			"Host: " + originHost + "\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n", len(up)) +
			"Connection: keep-alive, X-Hop\r\n" +
			"X-Hop: secret\r\n" +
			"Proxy-Connection: keep-alive\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
			"Proxy-Authenticate: Basic\r\n" +
			"TE: trailers\r\n" +
			"Trailer: X-Checksum\r\n" +
			"Upgrade: websocket\r\n" +
			"User-Agent: test-agent\r\n" +
			"X-End-To-End: kept\r\n\r\n"
		go c.Write(append([]byte(head), up...))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		checkResponse(t, resp, up, down)

		hdr, query := o.last()
		for _, name := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
			"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "X-Hop",
			"X-Forwarded-For", "Forwarded", "Via"} {
			if v, ok := hdr[name]; ok {
				t.Errorf("origin received %s: %q", name, v)
			}
		}
		if hdr.Get("X-End-To-End") != "kept" || hdr.Get("User-Agent") != "test-agent" {
			t.Errorf("end-to-end headers lost: %v", hdr)
		}
		if query != "a=1;b=2" {
			t.Errorf("origin got query %q, want it untouched", query)
		}
	})

	// A client configured to use the proxy: chunked upload, then download.
	proxyURL := &url.URL{Scheme: "http", Host: proxy}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	t.Run("chunked POST", func(t *testing.T) {
		body := struct{ io.Reader }{bytes.NewReader(up)} // no Len: sent chunked
		req, err := http.NewRequest(http.MethodPost, o.URL+"/chunked", body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		checkResponse(t, resp, up, down)
		if hdr, _ := o.last(); hdr.Get("X-Forwarded-For") != "" {
			t.Errorf("origin received X-Forwarded-For %q", hdr.Get("X-Forwarded-For"))
		}
	})
	t.Run("GET", func(t *testing.T) {
		resp, err := client.Get(o.URL + "/download")
		if err != nil {
			t.Fatal(err)
		}
		checkResponse(t, resp, nil, down)
	})
}

// An origin may answer before it has read the request body, and a client
// may send its body only once the answer has begun: the proxy carries both
// directions at once. The body it is still forwarding must be neither
// consumed nor closed by the server when the response starts; when it was,
// this exchange deadlocked, and a POST whose response began before the
// transport's final read of the body got an EOF instead of its response.
func TestHTTPForwardFullDuplex(t *testing.T) {
	checkLeaks(t)
	// Under net/http's 256 KiB limit, below which the server consumes the
	// unread body when a non-duplex handler starts its response.
	up := randBytes(t, 64<<10)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.EnableFullDuplex(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ready\n")
		if err := rc.Flush(); err != nil {
			return
		}
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			fmt.Fprintf(w, "read body: %v\n", err)
			return
		}
		fmt.Fprintf(w, "%x\n", h.Sum(nil))
	}))
	t.Cleanup(o.Close)
	proxy, _ := startHTTP(t, HTTPConfig{Dialer: &net.Dialer{}})

	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute)) // a guard against the deadlock
	host := strings.TrimPrefix(o.URL, "http://")
	if _, err := fmt.Fprintf(c, "POST %s/duplex HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", o.URL, host, len(up)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("response head: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	body := bufio.NewReader(resp.Body)
	if line, err := body.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	// Only now, with the response under way, the request body.
	if _, err := c.Write(up); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(up)
	if want := hex.EncodeToString(sum[:]) + "\n"; string(rest) != want {
		t.Errorf("origin answered %q, want the hash of the body sent, %q", rest, want)
	}
}

func TestHTTPErrors(t *testing.T) {
	checkLeaks(t)
	ln := listen(t, "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()

	unreachable := &wire.Error{Status: wire.StatusNetworkUnreachable, Err: fmt.Errorf("no link to an exit")}
	denied := &wire.Error{Status: wire.StatusNotAllowed, Err: fmt.Errorf("port 25")}
	d := dialFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
		switch addr {
		case "unreachable.test:80", "unreachable.test:443":
			return nil, unreachable
		case "denied.test:80", "denied.test:25":
			return nil, denied
		}
		var nd net.Dialer
		return nd.DialContext(ctx, network, addr)
	})
	proxy, _ := startHTTP(t, HTTPConfig{Dialer: d})

	tests := []struct {
		name, req string
		code      int
		body      string // the body's one line must contain this
	}{
		{"connect no link", "CONNECT unreachable.test:443 HTTP/1.1\r\nHost: unreachable.test:443\r\n\r\n", 503, unreachable.Error()},
		{"get no link", "GET http://unreachable.test/ HTTP/1.1\r\nHost: unreachable.test\r\n\r\n", 503, unreachable.Error()},
		{"connect not allowed", "CONNECT denied.test:25 HTTP/1.1\r\nHost: denied.test:25\r\n\r\n", 403, denied.Error()},
		{"get not allowed", "GET http://denied.test/x HTTP/1.1\r\nHost: denied.test\r\n\r\n", 403, denied.Error()},
		{"not allowed names --allow-private", "GET http://denied.test/x HTTP/1.1\r\nHost: denied.test\r\n\r\n", 403, "--allow-private"},
		{"not allowed names --rule", "CONNECT denied.test:25 HTTP/1.1\r\nHost: denied.test:25\r\n\r\n", 403, `--rule "allow PREFIX [PORTS]"`},
		{"connect refused", "CONNECT " + closed + " HTTP/1.1\r\nHost: " + closed + "\r\n\r\n", 502, "refused"},
		{"get refused", "GET http://" + closed + "/ HTTP/1.1\r\nHost: " + closed + "\r\n\r\n", 502, "refused"},
		{"not a proxy request", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "this is a proxy"},
		{"connect without port", "CONNECT example.org HTTP/1.1\r\nHost: example.org\r\n\r\n", 400, "bad CONNECT target"},
		{"other scheme", "GET ftp://example.org/file HTTP/1.1\r\nHost: example.org\r\n\r\n", 400, "this is a proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code {
				t.Errorf("status %d, want %d (%q)", resp.StatusCode, tt.code, body)
			}
			line, rest, _ := strings.Cut(string(body), "\n")
			if !strings.Contains(line, tt.body) || rest != "" {
				t.Errorf("body %q, want one line containing %q", body, tt.body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestNewHTTPValidates(t *testing.T) {
	for _, cfg := range []HTTPConfig{
		{},
		{Dialer: &net.Dialer{}, HeaderTimeout: -1},
		{Dialer: &net.Dialer{}, IdleTimeout: -1},
	} {
		if _, err := NewHTTP(cfg); err == nil {
			t.Errorf("NewHTTP(%+v): no error", cfg)
		}
	}
}

// Serve, cancelled with a tunnel, a streaming response, a pending dial, a
// half-sent request and idle connections on both sides, closes them all and
// returns; no goroutine is left (the transport's idle connections included).
func TestHTTPServeStops(t *testing.T) {
	checkLeaks(t)
	hold := holdTarget(t)
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		if r.URL.Path == "/stream" {
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		}
	}))
	var (
		mu          sync.Mutex
		originConns int
	)
	o.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			originConns++
		case http.StateClosed, http.StateHijacked:
			originConns--
		}
	}
	o.Start()
	t.Cleanup(o.Close)
	dialing := make(chan struct{}, 1)
	d := dialFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == "192.0.2.1:1" {
			dialing <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		var nd net.Dialer
		return nd.DialContext(ctx, network, addr)
	})
	proxy, stop := startHTTP(t, HTTPConfig{Dialer: d})
	open := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", proxy)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}

	tunnel, tbr := open()
	io.WriteString(tunnel, "CONNECT "+hold+" HTTP/1.1\r\nHost: "+hold+"\r\n\r\n")
	if status, err := readHead(tbr); err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("CONNECT: %q, %v", status, err)
	}
	io.WriteString(tunnel, "data")

	stream, sbr := open()
	io.WriteString(stream, "GET "+o.URL+"/stream HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(sbr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("stream: %q, %v", line, err)
	}

	// A finished request leaves the proxy an idle connection to the origin
	// (the streaming request holds the first one) and the client an idle
	// connection to the proxy.
	idle, ibr := open()
	io.WriteString(idle, "GET "+o.URL+"/small HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(ibr, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()

	pending, _ := open()
	io.WriteString(pending, "CONNECT 192.0.2.1:1 HTTP/1.1\r\nHost: 192.0.2.1:1\r\n\r\n")
	<-dialing

	half, _ := open()
	io.WriteString(half, "GET http://example.org/ HTTP/1.1\r\nHost: exa")

	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for i, c := range []net.Conn{tunnel, idle, stream, pending, half} {
		c.SetReadDeadline(time.Now().Add(time.Minute)) // a guard
		if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
			t.Errorf("conn %d: %v, want EOF", i, err)
		}
	}
	// The proxy closed its connections to the origin, idle ones included.
	eventually(t, "the origin sees the proxy's connections closed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return originConns == 0
	})
}

// A client that stops part way through its request head is disconnected
// after HeaderTimeout, before anything is dialed.
func TestHTTPHeaderTimeout(t *testing.T) {
	checkLeaks(t)
	rec := &recorder{}
	proxy, _ := startHTTP(t, HTTPConfig{Dialer: rec, HeaderTimeout: 100 * time.Millisecond})
	for _, tt := range []struct{ name, send string }{
		{"silent", ""},
		{"half a request line", "CONNECT 127.0.0.1:"},
		{"no blank line", "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"},
		{"half a plain request", "GET http://127.0.0.1:1/ HTTP/1.1\r\nHo"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(time.Minute)) // a guard, not the assertion
			if _, err := io.WriteString(c, tt.send); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("want the proxy to close, got %v", err)
			}
			// net/http answers 400 to a head cut short, and nothing to silence.
			if len(got) != 0 && !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
				t.Fatalf("got %q, want nothing or 400", got)
			}
		})
	}
	if d := rec.got(); len(d) != 0 {
		t.Fatalf("dialed %v for requests that never arrived", d)
	}
}
