package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/libp2p/go-yamux/v5"
	utls "github.com/refraction-networking/utls"
)

// ErrPeerMismatch is returned by Client when the exit presents a peer ID
// other than the pinned one.
var ErrPeerMismatch = errors.New("exit presented a different peer ID")

// Config configures both ends of a link. The zero value of a field means its
// default.
type Config struct {
	// Identity is this peer's key. Required.
	Identity *Identity
	// HandshakeTimeout bounds the TLS handshake and the proofs of identity
	// that follow it. Default 10s.
	HandshakeTimeout time.Duration
	// KeepAlive is how often an idle link is pinged. A ping that is not
	// answered within KeepAlive closes the link, so a dead link is noticed
	// within twice this. Default 5s.
	KeepAlive time.Duration
	// MemoryManager, when set, is asked by yamux for one memory span per
	// stream: the stream's initial receive window and each growth of it are
	// reserved there, and a refused growth keeps the window as it is. Nil
	// reserves without limit. An exit sets one per link to cap what one
	// client can make it buffer.
	MemoryManager func() (yamux.MemoryManager, error)
	// Log receives link events. Nil discards them.
	Log *slog.Logger

	// DescriptorOnly, on the client side, asks the exit to admit this
	// link only to read the exit's own descriptor, which is public (a
	// relay verifying an exit, SPEC.md "Link"): the exit may admit it
	// whatever its allow-list says (AdmitDescriptorOnly), and serves
	// nothing else on it. Session.DescriptorOnly tells the exit such a
	// link.
	DescriptorOnly bool
	// AdmitDescriptorOnly, on the exit side, is asked instead of allow
	// about a client that asks only for the exit's descriptor. Nil admits
	// none beyond those allow admits.
	AdmitDescriptorOnly func(PeerID) bool
	// Nested, on the client side, says the link runs inside a stream of
	// another link (two hops): its frames are cut so that each one, with
	// its TLS records, fits one frame of the outer link, rather than
	// spilling a few bytes into a second, tiny one.
	Nested bool
	// ServerName is, on the client side, the host name sent in the
	// ClientHello (SNI); empty follows the rule in hello.go. On the exit
	// side it is the host name of the self-signed certificate; empty is
	// HostName of the exit's peer ID.
	ServerName string
	// Certificate is the exit's own TLS certificate and chain, for an exit
	// with a domain: browsers and probers then see a valid chain. Nil
	// means a self-signed certificate (cert.go). Either way the exit's
	// peer ID is proven inside the channel.
	Certificate *tls.Certificate
	// Fallback, on the exit side, receives every connection that does not
	// prove itself an admitted client within HandshakeTimeout, to serve it
	// as a web site: conn is the TLS connection with the bytes already
	// read put back in front, proto the ALPN protocol negotiated ("h2",
	// "http/1.1" or ""). Fallback owns conn and returns when it is done
	// with it. Nil closes such connections.
	Fallback func(conn net.Conn, proto string)
	// H2Preface, on the exit side, is what the exit sends at once on a
	// connection that negotiated h2, before it knows whether a client or
	// a browser is there: the SETTINGS (and WINDOW_UPDATE) frames its
	// fallback's HTTP/2 server sends first, so that a prober sees them
	// as early as from any HTTP/2 server. Nil sends nothing.
	H2Preface []byte
}

func (c *Config) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout > 0 {
		return c.HandshakeTimeout
	}
	return 10 * time.Second
}

// yamuxConfig returns the multiplexer settings for a link.
func (c *Config) yamuxConfig() *yamux.Config {
	ka := c.KeepAlive
	if ka <= 0 {
		ka = 5 * time.Second
	}
	return &yamux.Config{
		// A torrent client opens hundreds of flows in a burst when it
		// starts or adds a torrent; streams the exit has not accepted yet
		// wait here. yamux's default of 256 resets the rest.
		AcceptBacklog: 4096,
		PingBacklog:   32,
		// yamux pings after KeepAlive without traffic and closes the session
		// when the ping is not answered within ConnectionWriteTimeout: a
		// dead link is found in at most 2×KeepAlive, not yamux's default of
		// 40 s. The same timeout bounds a write into a stalled connection.
		EnableKeepAlive:        true,
		KeepAliveInterval:      ka,
		ConnectionWriteTimeout: ka,
		MeasureRTTInterval:     ka,
		// Streams are flows: a busy torrent client holds a few thousand.
		// Per-client limits on what the exit carries are the exit's own
		// business; the multiplexer must not be the bottleneck.
		MaxIncomingStreams: 16384,
		// The window grows on demand from 256 KiB up to 32 MiB per stream,
		// and only for a stream whose reader keeps up: one flow then carries
		// about 180 MB/s over a link with 50 ms round trips (16 MiB gave 110,
		// measured with 'swarmvpn bench --rtt 50ms'), while an idle flow
		// costs no buffer at all. An exit caps what one client's windows
		// may reserve in all.
		InitialStreamWindowSize: 256 * 1024,
		MaxStreamWindowSize:     32 * 1024 * 1024,
		// crypto/tls already buffers a whole decrypted record; a second
		// buffer in yamux would only copy it again.
		ReadBufSize: 0,
		// One yamux frame becomes at most four full TLS records.
		MaxMessageSize: maxFrame(c.Nested),
		LogOutput:      io.Discard,
	}
}

// maxFrame is the largest yamux frame, header (12 bytes) included: 64 KiB,
// four full TLS records. For a nested link it is 64 KiB − 100: with the
// overhead of its four TLS records (22 bytes each: header, content type,
// tag) one frame of it is 64 KiB − 12 bytes, the largest payload of one
// frame of the outer link, which is then four full records too. A flow
// that reads 64 KiB − 112 bytes at a time (internal/relay) fills one frame
// of either.
func maxFrame(nested bool) uint32 {
	if nested {
		return 64*1024 - 100
	}
	return 64 * 1024
}

// Session is an established link: a yamux session over TLS, and the
// authenticated peer at the other end.
type Session struct {
	*yamux.Session
	// Peer is the other end's peer ID, proven inside the TLS channel.
	Peer PeerID
	// Version is the link protocol version the two ends agreed on.
	Version int
	// Conn is the TLS connection under the session: a *tls.Conn at the
	// exit, a uTLS connection at the client.
	Conn net.Conn
	// DescriptorOnly, at the exit, says the client asked to read the
	// exit's descriptor and nothing else (Config.DescriptorOnly): it must
	// be served nothing more, and, when Config.AdmitDescriptorOnly is
	// set, allow was not asked about it.
	DescriptorOnly bool
}

// Client runs the client side of the handshake on conn: TLS 1.3 with a
// browser's ClientHello, then each side proves its peer ID inside the
// channel; the exit must prove want. A zero want is a pin like any other
// and refuses every exit: ClientUnpinned is the one way to accept an exit
// whose ID is not known yet. On success the caller owns the Session; on
// failure conn is closed.
func Client(ctx context.Context, conn net.Conn, cfg Config, want PeerID) (*Session, error) {
	return client(ctx, conn, cfg, &want)
}

// ClientUnpinned is Client for an exit whose peer ID is not known yet (an
// address learned from the DHT): it accepts any peer ID the exit proves
// inside the channel, and Session.Peer says which. Whatever the caller
// learns over such a session about the exit must be checked against
// Session.Peer, and no flow may go over it.
func ClientUnpinned(ctx context.Context, conn net.Conn, cfg Config) (*Session, error) {
	return client(ctx, conn, cfg, nil)
}

// client runs the client handshake; want is the pinned peer ID, nil for
// an unpinned client.
func client(ctx context.Context, conn net.Conn, cfg Config, want *PeerID) (*Session, error) {
	if cfg.Identity == nil {
		conn.Close()
		return nil, errors.New("link: no identity configured")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.handshakeTimeout())
	defer cancel()
	name := cfg.ServerName
	if name == "" {
		if want != nil {
			name = HostName(*want)
		} else if ra := conn.RemoteAddr(); ra != nil {
			name = serverName(ExitAddr{Addr: ra.String()})
		} else {
			name = serverName(ExitAddr{})
		}
	}
	bconn := newBatched(conn)
	uconn, err := chromeClient(ctx, bconn, name)
	if err != nil {
		return nil, err
	}
	peer, version, err := clientProofs(ctx, uconn, cfg.Identity, want, cfg.DescriptorOnly)
	if err != nil {
		uconn.Close()
		return nil, err
	}
	mux, err := yamux.Client(framed(uconn, bconn), cfg.yamuxConfig(), cfg.MemoryManager)
	if err != nil {
		uconn.Close()
		return nil, err
	}
	return &Session{Session: mux, Peer: peer, Version: version, Conn: uconn}, nil
}

type utlsState struct{ *utls.UConn }

func (u utlsState) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	cs := u.ConnectionState()
	return cs.ExportKeyingMaterial(label, context, length)
}

// clientProofs sends the client's proof and reads and checks the exit's:
// the exit must prove *want, or, with want nil, any peer ID, which it
// returns.
func clientProofs(ctx context.Context, uconn *utls.UConn, id *Identity, want *PeerID, descOnly bool) (PeerID, int, error) {
	stop := deadlineFrom(ctx, uconn)
	defer stop()
	c := utlsState{uconn}
	ek, err := exportKey(c)
	if err != nil {
		return PeerID{}, 0, err
	}
	versions := []byte{minVersion, Version}
	if descOnly {
		versions[0] |= descriptorOnlyFlag
	}
	if _, err := c.Write(proof(id, ek, clientTag(ek), versions, clientContext)); err != nil {
		return PeerID{}, 0, fmt.Errorf("send proof: %w", err)
	}
	tag, err := readExitTag(c, ek)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = ErrRefused
		}
		return PeerID{}, 0, ctxErr(ctx, err)
	}
	ver, peer, err := readProof(c, ek, tag, 1, exitContext)
	if err != nil {
		return PeerID{}, 0, ctxErr(ctx, fmt.Errorf("exit's proof: %w", err))
	}
	if v := int(ver[0]); v < minVersion || v > Version {
		return PeerID{}, 0, fmt.Errorf("exit chose link protocol version %d, this client speaks %d to %d", v, minVersion, Version)
	}
	if want != nil && peer != *want {
		return PeerID{}, 0, fmt.Errorf("%w: got %s, pinned %s", ErrPeerMismatch, peer, *want)
	}
	return peer, int(ver[0]), nil
}

// deadlineFrom makes conn's reads and writes end with ctx: at its
// deadline, or at once when it is cancelled. stop clears the deadline.
func deadlineFrom(ctx context.Context, conn net.Conn) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	after := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	return func() {
		after()
		conn.SetDeadline(time.Time{})
	}
}

// ctxErr prefers the context's error to the I/O error its deadline caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// Server runs the exit side of the handshake on conn: TLS with the exit's
// certificate, then the client's proof, then the exit's. allow, when not
// nil, is asked about the client's peer ID before the exit proves itself.
// A connection that does not prove itself a client in time, or that allow
// refuses, goes to Config.Fallback (the refused client learns only that it
// was not accepted) and Server returns an error wrapping ErrFallback. On
// failure conn is closed or owned by the fallback.
func Server(ctx context.Context, conn net.Conn, cfg Config, allow func(PeerID) bool) (*Session, error) {
	tc, err := cfg.serverTLS()
	if err != nil {
		conn.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.handshakeTimeout())
	defer cancel()
	bconn := newBatched(conn)
	tconn := tls.Server(bconn, tc)
	if err := tconn.HandshakeContext(ctx); err != nil {
		tconn.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	cs := tconn.ConnectionState()
	var sent []byte
	if cs.NegotiatedProtocol == "h2" && len(cfg.H2Preface) > 0 {
		if _, err := tconn.Write(cfg.H2Preface); err != nil {
			tconn.Close()
			return nil, fmt.Errorf("send h2 settings: %w", err)
		}
		sent = cfg.H2Preface
	}
	rec := &recorder{r: tconn}
	peer, version, descOnly, err := cfg.serverProofs(ctx, tconn, cs, rec, allow)
	if err != nil {
		if ctx.Err() != nil && ctx.Err() != context.DeadlineExceeded {
			tconn.Close() // the exit is shutting down
			return nil, ctxErr(ctx, err)
		}
		tconn.SetDeadline(time.Time{})
		fc := &replayConn{Conn: tconn, state: cs, pending: rec.read, skip: sent}
		if cfg.Fallback != nil {
			cfg.Fallback(fc, cs.NegotiatedProtocol)
		} else {
			fc.Close()
		}
		return nil, fmt.Errorf("%w: %w", ErrFallback, err)
	}
	ycfg := cfg.yamuxConfig()
	if descOnly {
		// One request on one stream (SPEC.md "Link"): more streams are
		// reset at once, not held unaccepted with their windows of data
		// by a link that needs no client slot.
		ycfg.AcceptBacklog, ycfg.MaxIncomingStreams = 1, 1
	}
	mux, err := yamux.Server(framed(tconn, bconn), ycfg, cfg.MemoryManager)
	if err != nil {
		tconn.Close()
		return nil, err
	}
	return &Session{Session: mux, Peer: peer, Version: version, Conn: tconn, DescriptorOnly: descOnly}, nil
}

// descriptorOnlyFlag, set in the MINVER byte of a client's proof, asks the
// exit to admit the link only to read its descriptor (SPEC.md "Link").
const descriptorOnlyFlag = 0x80

// serverProofs reads and checks the client's proof, asks allow (or
// AdmitDescriptorOnly, for a client that asks only for the exit's
// descriptor), and sends the exit's proof.
func (cfg *Config) serverProofs(ctx context.Context, tconn *tls.Conn, cs tls.ConnectionState, r io.Reader, allow func(PeerID) bool) (PeerID, int, bool, error) {
	if cs.Version != tls.VersionTLS13 {
		return PeerID{}, 0, false, fmt.Errorf("TLS %#x: %w", cs.Version, errNotClient)
	}
	stop := deadlineFrom(ctx, tconn)
	defer stop()
	ek, err := exportKey(&cs)
	if err != nil {
		return PeerID{}, 0, false, err
	}
	tag, err := readClientTag(r, ek)
	if err != nil {
		return PeerID{}, 0, false, err
	}
	vers, peer, err := readProof(r, ek, tag, 2, clientContext)
	if err != nil {
		return PeerID{}, 0, false, fmt.Errorf("client's proof: %w", err)
	}
	descOnly := vers[0]&descriptorOnlyFlag != 0
	lo := int(vers[0] &^ descriptorOnlyFlag)
	version := min(int(vers[1]), Version)
	if version < max(lo, minVersion) {
		return PeerID{}, 0, false, fmt.Errorf("client speaks link protocol versions %d to %d, this exit %d to %d", lo, vers[1], minVersion, Version)
	}
	admit := allow
	if descOnly && cfg.AdmitDescriptorOnly != nil {
		admit = cfg.AdmitDescriptorOnly
	}
	if admit != nil && !admit(peer) {
		return PeerID{}, 0, false, fmt.Errorf("client %s is not admitted (allow-list or capacity)", peer.Short())
	}
	if _, err := tconn.Write(proof(cfg.Identity, ek, exitTag(ek), []byte{byte(version)}, exitContext)); err != nil {
		return PeerID{}, 0, false, fmt.Errorf("send proof: %w", err)
	}
	return peer, version, descOnly, nil
}

// recorder keeps what is read through it, for the fallback.
type recorder struct {
	r    io.Reader
	read []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.read = append(r.read, p[:n]...)
	return n, err
}

// Dial connects to an exit and runs the client handshake, pinning
// exit.ID. The SNI is the exit address's host when it is a name (see
// hello.go).
func Dial(ctx context.Context, cfg Config, exit ExitAddr) (*Session, error) {
	conn, err := dialTCP(ctx, exit.Addr)
	if err != nil {
		return nil, err
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName(exit)
	}
	return Client(ctx, conn, cfg, exit.ID)
}

// DialUnpinned connects to addr (HOST:PORT) and runs the client handshake
// without a pinned peer ID: see ClientUnpinned. Only probing an exit found
// by address uses it; everything else pins. The SNI follows the rule in
// hello.go for an exit with no peer ID known.
func DialUnpinned(ctx context.Context, cfg Config, addr string) (*Session, error) {
	conn, err := dialTCP(ctx, addr)
	if err != nil {
		return nil, err
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName(ExitAddr{Addr: addr})
	}
	return ClientUnpinned(ctx, conn, cfg)
}

func dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		// yamux has its own keepalive; the kernel's would only add packets.
		tcp.SetKeepAlive(false)
	}
	return conn, nil
}

// serverTLS returns the exit's TLS configuration: an ordinary HTTPS
// server's, with h2 and http/1.1, no client certificate requested.
func (cfg *Config) serverTLS() (*tls.Config, error) {
	if cfg.Identity == nil {
		return nil, errors.New("link: no identity configured")
	}
	tc := &tls.Config{
		// TLS 1.2 too, as any web server: a link needs 1.3 and the exit
		// sends anything older to the fallback.
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		// Full-size records from the first byte: a link carries bulk data,
		// and small writes stay small records anyway.
		DynamicRecordSizingDisabled: true,
	}
	if cfg.Certificate != nil {
		tc.Certificates = []tls.Certificate{*cfg.Certificate}
		return tc, nil
	}
	name := cfg.ServerName
	if name == "" {
		name = HostName(cfg.Identity.ID())
	}
	if _, err := cfg.Identity.selfSigned(name, time.Now()); err != nil {
		return nil, err
	}
	tc.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return cfg.Identity.selfSigned(name, time.Now())
	}
	return tc, nil
}
