package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Defaults for HTTPConfig.
const (
	DefaultHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout   = 2 * time.Minute
)

// HTTPConfig configures an HTTP proxy. The zero value of each field means its
// default.
type HTTPConfig struct {
	// Dialer carries every request to its destination. Required.
	Dialer Dialer

	// HeaderTimeout bounds the arrival of a request's line and headers.
	// Default DefaultHeaderTimeout.
	HeaderTimeout time.Duration

	// IdleTimeout closes a kept-alive client connection, and an idle
	// connection to an origin, after this long without a request.
	// Default DefaultIdleTimeout.
	IdleTimeout time.Duration

	// Log receives one Debug record per request or CONNECT flow. nil
	// discards.
	Log *slog.Logger
}

// HTTP is an HTTP/1.1 forward proxy: CONNECT host:port opens a tunnel, and a
// request with an absolute URI (GET http://host/path) is forwarded with its
// hop-by-hop headers removed. Both go through the Dialer. It is also an
// http.Handler.
type HTTP struct {
	dialer        Dialer
	headerTimeout time.Duration
	idleTimeout   time.Duration
	log           *slog.Logger
	transport     *http.Transport
	forward       *httputil.ReverseProxy
	flows         flowCounters
}

// NewHTTP validates cfg and returns a proxy ready to Serve.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	if cfg.Dialer == nil {
		return nil, errors.New("http proxy: no dialer")
	}
	if cfg.HeaderTimeout < 0 || cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("http proxy: negative timeout (header %v, idle %v)", cfg.HeaderTimeout, cfg.IdleTimeout)
	}
	h := &HTTP{
		dialer:        cfg.Dialer,
		headerTimeout: orDefault(cfg.HeaderTimeout, DefaultHeaderTimeout),
		idleTimeout:   orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		log:           cfg.Log,
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.transport = &http.Transport{
		// Never http.ProxyFromEnvironment: HTTP(S)_PROXY would send
		// requests around the tunnel.
		Proxy:       nil,
		DialContext: cfg.Dialer.DialContext,
		// Pass bodies through as the origin sent them; the client decides
		// about compression.
		DisableCompression:  true,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     h.idleTimeout,
		TLSHandshakeTimeout: DefaultHeaderTimeout,
	}
	h.forward = &httputil.ReverseProxy{
		// The outbound request is the inbound one, URL untouched (Rewrite
		// would drop query parameters it cannot parse), with hop-by-hop
		// headers stripped. A nil X-Forwarded-For tells ReverseProxy not to
		// add one: it would reveal the user's address.
		Director: func(out *http.Request) {
			out.Header["X-Forwarded-For"] = nil
		},
		Transport:    h.transport,
		ErrorHandler: h.forwardFailed,
		ErrorLog:     slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}
	return h, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Serve accepts HTTP clients on ln until ctx ends, then closes ln, every
// client connection (tunnels included) and the idle connections to origins,
// and returns nil once all of its goroutines have ended. It returns early,
// with an error, only when Accept fails for a reason other than a temporary
// one.
func (h *HTTP) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// conns counts the server's connection goroutines, from StateNew until
	// StateClosed (the goroutine's last act) or StateHijacked, and every
	// handler call, which outlives StateHijacked for a CONNECT tunnel.
	var conns sync.WaitGroup
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conns.Add(1) // the connection's count is held: Add is safe
			defer conns.Done()
			h.ServeHTTP(w, r)
		}),
		// Requests, and so dials and tunnels, end with ctx.
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: h.headerTimeout,
		IdleTimeout:       h.idleTimeout,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				conns.Done()
			}
		},
		ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}
	release := closeOnDone(ctx, srv)
	err := srv.Serve(ln)
	cancel() // ends tunnels and requests still running
	release()
	srv.Close() // when Serve failed by itself
	conns.Wait()
	h.transport.CloseIdleConnections()
	if errors.Is(err, http.ErrServerClosed) {
		return nil // only closeOnDone closes srv: ctx ended
	}
	return fmt.Errorf("http proxy: %w", err)
}

// ServeHTTP proxies one request.
func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		h.connect(w, r)
		return
	}
	if !r.URL.IsAbs() || (r.URL.Scheme != "http" && r.URL.Scheme != "https") || r.URL.Host == "" {
		http.Error(w, "this is a proxy: send CONNECT host:port or a request with an absolute http:// URI", http.StatusBadRequest)
		return
	}
	if _, err := wire.ParseAddr(hostPort(r.URL.Scheme, r.URL.Host)); err != nil {
		http.Error(w, oneLine(fmt.Sprintf("bad host %q: %v", r.URL.Host, err)), http.StatusBadRequest)
		return
	}
	h.forwardRequest(w, r)
}

// hostPort adds the scheme's port to a URL host that has none.
func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), port)
}

// connect opens a tunnel to the CONNECT target.
func (h *HTTP) connect(w http.ResponseWriter, r *http.Request) {
	dst, err := wire.ParseAddr(r.Host)
	if err != nil {
		http.Error(w, oneLine(fmt.Sprintf("bad CONNECT target %q: %v", r.Host, err)), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	start := time.Now()
	target, err := h.dialer.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		h.fail(w, dst.String(), err)
		return
	}
	defer closeOnDone(ctx, target)()

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		target.Close()
		h.log.Debug("http connect: hijack failed", "dst", dst.String(), "err", err)
		http.Error(w, "cannot open a tunnel on this connection", http.StatusInternalServerError)
		return
	}
	defer closeOnDone(ctx, conn)()

	// Bytes the client sent after its CONNECT header may sit in the
	// server's buffer; they go first. Past them, read the connection
	// itself: the server's reader must not be used after a hijack.
	var rd io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		rd = io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		target.Close()
		conn.Close()
		h.log.Debug("http connect: reply failed", "dst", dst.String(), "err", err)
		return
	}
	res := h.flows.splice(&clientConn{Conn: conn, r: rd}, target)
	attrs := []any{"dst", dst.String(), "bytes_in", res.BtoA, "bytes_out", res.AtoB, "dur", time.Since(start)}
	if res.Err != nil {
		attrs = append(attrs, "err", res.Err)
	}
	h.log.Debug("http connect flow ended", attrs...)
}

// forwardRequest sends an absolute-URI request on through the transport.
func (h *HTTP) forwardRequest(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// The transport may still be reading the request body when the
	// response starts: it makes one last Read after Content-Length bytes,
	// and an origin may answer before it has read the body at all. An
	// HTTP/1 server, unless told the handler is full duplex, consumes and
	// closes the unread body as the response header goes out; that Read
	// then fails, the transport closes the origin connection, and the
	// response is cut off into an EOF. HTTP/2 is always full duplex and
	// says ErrNotSupported, which is then no error.
	_ = http.NewResponseController(w).EnableFullDuplex()
	out := r.WithContext(r.Context())
	out.Header = r.Header.Clone()
	removeHopByHop(out.Header)
	// ReverseProxy strips these too, but keeps Upgrade and TE: trailers
	// (and would then splice a protocol switch); this proxy drops them.
	body := &countingReader{r: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		out.Body = body
	}
	cw := &countingWriter{ResponseWriter: w}
	h.forward.ServeHTTP(cw, out)
	h.flows.ended(cw.n, body.n.Load())
	h.log.Debug("http request ended", "dst", r.URL.Host, "bytes_in", cw.n, "bytes_out", body.n.Load(), "dur", time.Since(start))
}

// forwardFailed answers a request the transport could not carry.
func (h *HTTP) forwardFailed(w http.ResponseWriter, r *http.Request, err error) {
	h.fail(w, r.URL.Host, err)
}

// fail answers with the status for a dial error: 503 when there is no link
// to an exit, 403 when the exit's policy refuses, 502 otherwise. The body is
// the error on one line, for a 403 followed by the exit's settings that
// would allow it.
func (h *HTTP) fail(w http.ResponseWriter, dst string, err error) {
	h.log.Debug("http proxy: request failed", "dst", dst, "err", err)
	msg := err.Error()
	if wire.StatusOf(err) == wire.StatusNotAllowed {
		msg += notAllowedHint
	}
	http.Error(w, oneLine(msg), httpStatus(err))
}

// notAllowedHint follows a policy refusal in a 403's body: who can change
// the policy, and how. Trying swarmvpn against a server on one's own
// machine or LAN meets this first.
const notAllowedHint = " (the exit refuses loopback and private destinations, and any its --rule denies; " +
	"whoever runs the exit can carry them with --allow-private, for loopback and private networks, " +
	`or --rule "allow PREFIX [PORTS]")`

// httpStatus maps a dial error to the proxy's HTTP status.
func httpStatus(err error) int {
	switch wire.StatusOf(err) {
	case wire.StatusNetworkUnreachable:
		return http.StatusServiceUnavailable
	case wire.StatusNotAllowed:
		return http.StatusForbidden
	}
	return http.StatusBadGateway
}

// oneLine makes s safe as a one-line plain-text body.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// hopByHop are the headers meaningful only for one connection (RFC 9110
// §7.6.1), plus Proxy-Connection, which old clients send.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes hop-by-hop headers and those named in Connection.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// countingReader counts the request body bytes sent on. The transport may
// still be reading it after the handler returns, hence the atomic.
type countingReader struct {
	r io.ReadCloser
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// countingWriter counts the response body bytes sent back. Unwrap lets
// http.ResponseController reach the real writer to flush.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
