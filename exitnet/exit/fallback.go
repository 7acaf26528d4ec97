package exit

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// site is the web site an exit serves to every connection on its TLS
// listener that is not an admitted client: a browser, a scanner, a
// censor's prober, a replayed or forged proof, a refused client. It is
// either a reverse proxy to a real site (Config.Fallback) or a small
// built-in page, and it answers HTTP/2 and HTTP/1.1 as the TLS handshake
// negotiated: net/http serves the connection link.Server hands over, with
// the bytes the exit read put back in front.
type site struct {
	h1, h2 *http.Server // HTTP/1.1 only; HTTP/2 only (for ALPN h2)
	q1, q2 *connQueue
	closed chan struct{}
	once   sync.Once
	// preface is what the HTTP/2 server sends first on a connection: its
	// SETTINGS and WINDOW_UPDATE frames, learnt in start. The exit sends
	// them at once on every h2 connection (link.Config.H2Preface).
	preface []byte
}

const (
	// siteHeaderTimeout bounds the wait for a request's headers once the
	// exit has handed a connection over; with the exit's first-bytes
	// window of 10 s, a connection that sends nothing is closed a minute
	// after its handshake, as by nginx's default client_header_timeout.
	siteHeaderTimeout = 50 * time.Second
	siteIdleTimeout   = 75 * time.Second
)

// newSite checks target (empty: the built-in page) and returns the site,
// not yet serving.
func newSite(target, name string, logger *slog.Logger) (*site, error) {
	var h http.Handler
	if target == "" {
		h = builtinSite(name)
	} else {
		u, err := url.Parse(target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("exit: fallback %q: want the URL of a web site such as http://127.0.0.1:8080", target)
		}
		h = &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(u)
				r.Out.Host = r.In.Host // the name the visitor asked for
				r.SetXForwarded()
			},
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		}
	}
	s := &site{q1: newConnQueue(), q2: newConnQueue(), closed: make(chan struct{})}
	// A web server's own complaints (bad requests, broken connections)
	// are what visitors cause: Debug at most.
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	p2.SetUnencryptedHTTP2(true) // the connection is TLS already; net/http sees its plaintext
	s.h1 = &http.Server{Handler: h, Protocols: &p1, ReadHeaderTimeout: siteHeaderTimeout, IdleTimeout: siteIdleTimeout, ErrorLog: errLog}
	s.h2 = &http.Server{Handler: h, Protocols: &p2, ReadHeaderTimeout: siteHeaderTimeout, IdleTimeout: siteIdleTimeout, ErrorLog: errLog}
	return s, nil
}

// start serves the site until close; the goroutines it starts are in wg.
// It then learns the HTTP/2 server's preface.
func (s *site) start(wg *sync.WaitGroup, log *slog.Logger) {
	wg.Go(func() { s.h1.Serve(s.q1) })
	wg.Go(func() { s.h2.Serve(s.q2) })
	p, err := s.learnPreface()
	if err != nil {
		log.Warn("fallback site: HTTP/2 settings not learnt; h2 connections get them only once a request arrives", "err", err)
		return
	}
	s.preface = p
}

// close stops the site and closes every connection it serves.
func (s *site) close() {
	s.once.Do(func() {
		close(s.closed)
		s.h1.Close()
		s.h2.Close()
	})
}

// serve serves conn as the site, negotiated protocol proto, and returns
// when the connection is done or the site closed.
func (s *site) serve(conn net.Conn, proto string) {
	dc := &doneConn{Conn: conn, done: make(chan struct{})}
	var c net.Conn = &tlsDoneConn{dc}
	q := s.q1
	if proto == "h2" {
		// net/http serves HTTP/2 only on a connection it does not take
		// for TLS: no ConnectionState here.
		c, q = dc, s.q2
	}
	if !q.push(c, s.closed) {
		conn.Close()
		return
	}
	select {
	case <-dc.done:
	case <-s.closed:
		dc.Close()
	}
}

// h2ClientPreface is what an HTTP/2 client sends first: the fixed string
// and an empty SETTINGS frame.
var h2ClientPreface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")

// learnPreface asks the site's own HTTP/2 server what it sends first: it
// opens a connection to it in memory, sends a client's preface and reads
// frames until the server acknowledges the client's SETTINGS. What came
// before the acknowledgement is the server's preface.
func (s *site) learnPreface() ([]byte, error) {
	a, b := net.Pipe()
	defer a.Close()
	a.SetDeadline(time.Now().Add(5 * time.Second))
	dc := &doneConn{Conn: b, done: make(chan struct{})}
	if !s.q2.push(dc, s.closed) {
		b.Close()
		return nil, net.ErrClosed
	}
	wrote := make(chan error, 1)
	go func() { _, err := a.Write(h2ClientPreface); wrote <- err }()
	var preface []byte
	hdr := make([]byte, 9)
	for range 16 {
		if _, err := io.ReadFull(a, hdr); err != nil {
			a.Close()
			<-wrote
			return nil, err
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		if n > 1024 || binary.BigEndian.Uint32(hdr[5:])&0x7fffffff != 0 {
			break
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(a, payload); err != nil {
			break
		}
		if hdr[3] == 0x4 && hdr[4]&0x1 != 0 { // SETTINGS with ACK
			a.Close()
			if err := <-wrote; err != nil {
				return nil, err
			}
			return preface, nil
		}
		preface = append(append(preface, hdr...), payload...)
	}
	a.Close()
	<-wrote
	return nil, fmt.Errorf("no SETTINGS acknowledgement in the first frames")
}

// builtinSite is the page an exit without --fallback shows: a small
// personal site's placeholder, titled with the exit's host name.
func builtinSite(name string) http.Handler {
	page := []byte(fmt.Sprintf(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#333}</style>
</head>
<body>
<h1>%s</h1>
<p>This site is being rebuilt. Please check back soon.</p>
</body>
</html>
`, html.EscapeString(name), html.EscapeString(name)))
	robots := []byte("User-agent: *\nDisallow: /\n")
	modified := time.Now().UTC().Truncate(time.Hour)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		http.ServeContent(w, r, "index.html", modified, bytes.NewReader(page))
	})
	mux.HandleFunc("GET /robots.txt", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		http.ServeContent(w, r, "robots.txt", modified, bytes.NewReader(robots))
	})
	return mux
}

// connQueue is a net.Listener whose connections are handed to it one by
// one, for http.Server.Serve.
type connQueue struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), closed: make(chan struct{})}
}

var _ net.Listener = (*connQueue)(nil)

func (q *connQueue) push(c net.Conn, stop <-chan struct{}) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.closed:
		return false
	case <-stop:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero, Port: 443} }

// doneConn tells when the web server has closed a connection.
type doneConn struct {
	net.Conn
	done chan struct{}
	once sync.Once
}

func (c *doneConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

// tlsDoneConn passes the TLS state on, so HTTP/1.1 handlers see
// Request.TLS.
type tlsDoneConn struct{ *doneConn }

func (c *tlsDoneConn) ConnectionState() tls.ConnectionState {
	if cs, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return cs.ConnectionState()
	}
	return tls.ConnectionState{}
}
