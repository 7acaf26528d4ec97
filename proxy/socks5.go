package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/things-go/go-socks5"
	"github.com/things-go/go-socks5/statute"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// DefaultHandshakeTimeout bounds a SOCKS5 client's greeting, authentication
// and request together.
const DefaultHandshakeTimeout = 10 * time.Second

// SOCKSConfig configures a SOCKS5 server. The zero value of each field means
// its default.
type SOCKSConfig struct {
	// Dialer carries every CONNECT to its destination. Required.
	Dialer Dialer

	// Username and Password, when set, require RFC 1929 username/password
	// authentication with exactly these credentials; clients offering only
	// "no authentication" are refused. Both empty: no authentication. Each
	// is at most 255 bytes.
	Username, Password string

	// HandshakeTimeout bounds the greeting, authentication and request
	// together: a client that has not sent all three within it is
	// disconnected. Default DefaultHandshakeTimeout. Once the request has
	// arrived, a flow has no time limit of its own.
	HandshakeTimeout time.Duration

	// Associator, when set, carries UDP ASSOCIATE: each association's
	// datagrams go through an Association it opens. nil: UDP ASSOCIATE is
	// answered "command not supported".
	Associator Associator

	// HTTPAddr is where the HTTP proxy beside this server listens, if any:
	// an HTTP request sent to the SOCKS5 port by mistake is answered 400
	// with a line that names it. Empty: no HTTP proxy.
	HTTPAddr string

	// Log receives one Debug record per connection or flow, and an Info
	// record when a UDP association to the far side is re-established. nil
	// discards.
	Log *slog.Logger
}

// SOCKS is a SOCKS5 server (RFC 1928) that speaks CONNECT through a Dialer
// and, with an Associator, UDP ASSOCIATE. BIND is answered "command not
// supported".
type SOCKS struct {
	dialer           Dialer
	associator       Associator
	handshakeTimeout time.Duration
	httpAddr         string
	log              *slog.Logger
	srv              *socks5.Server
	udp              udpCounters
	flows            flowCounters
}

// NewSOCKS validates cfg and returns a server ready to Serve.
func NewSOCKS(cfg SOCKSConfig) (*SOCKS, error) {
	if cfg.Dialer == nil {
		return nil, errors.New("socks5: no dialer")
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, errors.New("socks5: set both username and password, or neither")
	}
	if len(cfg.Username) > 255 || len(cfg.Password) > 255 {
		return nil, errors.New("socks5: username and password must be at most 255 bytes each (RFC 1929)")
	}
	if cfg.HandshakeTimeout < 0 {
		return nil, fmt.Errorf("socks5: negative handshake timeout %v", cfg.HandshakeTimeout)
	}
	s := &SOCKS{
		dialer:           cfg.Dialer,
		associator:       cfg.Associator,
		handshakeTimeout: cfg.HandshakeTimeout,
		httpAddr:         cfg.HTTPAddr,
		log:              cfg.Log,
	}
	if s.handshakeTimeout == 0 {
		s.handshakeTimeout = DefaultHandshakeTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	opts := []socks5.Option{
		// go-socks5 resolves domain names before it calls a handler; this
		// resolver leaves them unresolved so that they reach the Dialer.
		socks5.WithResolver(noResolver{}),
		socks5.WithConnectHandle(s.handleConnect),
		socks5.WithBindHandle(s.handleBind),
		socks5.WithAssociateHandle(s.handleAssociate),
	}
	if cfg.Username != "" {
		opts = append(opts, socks5.WithCredential(credentials{cfg.Username, cfg.Password}))
	}
	s.srv = socks5.NewServer(opts...)
	return s, nil
}

// Serve accepts SOCKS5 clients on ln until ctx ends, then closes ln and every
// connection it accepted and returns nil once all of its goroutines have
// ended. It returns early, with an error, only when Accept fails for a
// reason other than a temporary one.
func (s *SOCKS) Serve(ctx context.Context, ln net.Listener) error {
	return serveConns(ctx, ln, s.log, s.serveConn)
}

// serveConn speaks SOCKS5 on c until the client's flow ends. ctx ending
// aborts a dial in progress and closes the flow's target; the caller closes c.
func (s *SOCKS) serveConn(ctx context.Context, c net.Conn) {
	c.SetDeadline(time.Now().Add(s.handshakeTimeout))
	// The version byte is read here: go-socks5 reads a whole greeting
	// before it looks at it, and would wait out the handshake timeout on
	// bytes that are not SOCKS5 at all.
	var version [1]byte
	if _, err := io.ReadFull(c, version[:]); err != nil {
		s.log.Debug("socks5 connection ended", "err", err)
		return
	}
	if version[0] != statute.VersionSocks5 {
		s.notSOCKS5(c, version[0])
		return
	}
	if err := s.srv.ServeConn(&socksConn{Conn: c, ctx: ctx, pending: version[:]}); err != nil {
		s.log.Debug("socks5 connection ended", "err", err)
	}
}

// socksConn is what serveConn hands to go-socks5, which passes it back to the
// handlers as their writer: it carries the connection's context, since
// go-socks5 gives its handlers context.Background, and gives back first the
// version byte serveConn read.
type socksConn struct {
	net.Conn
	ctx     context.Context
	pending []byte
}

func (c *socksConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// requestRead is called by every handler: the request has arrived, so the
// handshake deadline no longer applies.
func requestRead(w io.Writer) (*socksConn, error) {
	c, ok := w.(*socksConn)
	if !ok {
		return nil, fmt.Errorf("socks5: handler called with a %T, not the server's connection", w)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// handleConnect carries a CONNECT request through the Dialer.
func (s *SOCKS) handleConnect(_ context.Context, w io.Writer, req *socks5.Request) error {
	c, err := requestRead(w)
	if err != nil {
		socks5.SendReply(w, statute.RepServerFailure, nil)
		return err
	}
	// With noResolver, DestAddr holds either an IP or the name as sent.
	dst, err := wire.ParseAddr(req.DestAddr.String())
	if err != nil {
		// An empty name, or one with bytes no resolver would accept: say
		// what a resolving server would say.
		err = &wire.Error{Status: wire.StatusHostUnreachable, Err: err}
		return s.refuse(c, req.DestAddr.String(), err)
	}
	start := time.Now()
	target, err := s.dialer.DialContext(c.ctx, "tcp", dst.String())
	if err != nil {
		return s.refuse(c, dst.String(), err)
	}
	defer closeOnDone(c.ctx, target)()

	bound, ok := target.LocalAddr().(*net.TCPAddr)
	if !ok || bound == nil {
		// go-socks5 turns a success with any other address into "address
		// type not supported".
		bound = &net.TCPAddr{IP: net.IPv4zero, Port: 0}
	}
	if err := socks5.SendReply(c.Conn, statute.RepSuccess, bound); err != nil {
		target.Close()
		return fmt.Errorf("socks5 connect %s: reply: %w", dst, err)
	}
	res := s.flows.splice(&clientConn{Conn: c.Conn, r: readAhead(req, c.Conn)}, target)
	attrs := []any{"dst", dst.String(), "bytes_in", res.BtoA, "bytes_out", res.AtoB, "dur", time.Since(start)}
	if res.Err != nil {
		attrs = append(attrs, "err", res.Err)
	}
	s.log.Debug("socks5 flow ended", attrs...)
	return nil
}

// readAhead returns the reader a flow reads its client from: the bytes the
// client pipelined after its request, which go-socks5's 4 KiB reader may
// hold, then conn itself. The flow does not keep that reader: an idle flow
// holds no buffer it does not need.
func readAhead(req *socks5.Request, conn net.Conn) io.Reader {
	br, ok := req.Reader.(*bufio.Reader)
	if !ok {
		return req.Reader
	}
	req.Reader = nil
	if n := br.Buffered(); n > 0 {
		early, _ := br.Peek(n)
		return io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)
	}
	return conn
}

// refuse sends the SOCKS5 reply for a failed CONNECT and returns err with
// its context.
func (s *SOCKS) refuse(c *socksConn, dst string, err error) error {
	if rerr := socks5.SendReply(c.Conn, replyCode(err), nil); rerr != nil {
		return fmt.Errorf("socks5 connect %s: %w (reply: %v)", dst, err, rerr)
	}
	return fmt.Errorf("socks5 connect %s: %w", dst, err)
}

// handleBind refuses BIND: nothing in swarmvpn's clients needs it.
func (s *SOCKS) handleBind(_ context.Context, w io.Writer, _ *socks5.Request) error {
	return s.unsupported(w, "bind")
}

// handleAssociate relays a UDP ASSOCIATE through the Associator, or refuses
// it when there is none. go-socks5's own association is unusable for
// torrents (a socket and goroutine per destination, never freed).
func (s *SOCKS) handleAssociate(_ context.Context, w io.Writer, req *socks5.Request) error {
	if s.associator == nil {
		return s.unsupported(w, "udp associate")
	}
	c, err := requestRead(w)
	if err != nil {
		socks5.SendReply(w, statute.RepServerFailure, nil)
		return err
	}
	return s.serveAssociate(c, req)
}

func (s *SOCKS) unsupported(w io.Writer, cmd string) error {
	c, err := requestRead(w)
	if err != nil {
		socks5.SendReply(w, statute.RepCommandNotSupported, nil)
		return err
	}
	if err := socks5.SendReply(c.Conn, statute.RepCommandNotSupported, nil); err != nil {
		return fmt.Errorf("socks5 %s: reply: %w", cmd, err)
	}
	return fmt.Errorf("socks5 %s: command not supported", cmd)
}

// replyCode is the SOCKS5 reply for a dial error: the values of wire.Status
// are the reply codes. An error that claims success, or a status SOCKS5 does
// not define, is a general failure.
func replyCode(err error) byte {
	st := wire.StatusOf(err)
	if st == wire.StatusOK || st > wire.StatusAddrTypeUnsupported {
		st = wire.StatusGeneralFailure
	}
	return byte(st)
}

// noResolver keeps domain names unresolved: go-socks5 then dials (through
// our handler) "name:port", and the name reaches the Dialer, so no DNS query
// leaves this machine.
type noResolver struct{}

func (noResolver) Resolve(ctx context.Context, _ string) (context.Context, net.IP, error) {
	return ctx, nil, nil
}

// credentials is the one username/password pair the server accepts,
// compared in constant time.
type credentials struct{ user, pass string }

func (c credentials) Valid(user, pass, _ string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(c.user))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(c.pass))
	return u&p == 1
}
