package link

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"time"

	"github.com/libp2p/go-yamux/v5"
)

// ALPN names the link protocol and its version in the TLS handshake. A peer
// that does not offer it is refused.
const ALPN = "swarmvpn/1"

// ErrPeerMismatch is returned by Client when the exit presents a peer ID
// other than the pinned one.
var ErrPeerMismatch = errors.New("exit presented a different peer ID")

// Config configures both ends of a link. The zero value of a field means its
// default.
type Config struct {
	// Identity is this peer's key. Required.
	Identity *Identity
	// HandshakeTimeout bounds the TLS handshake. Default 10s.
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
		MaxMessageSize: 64 * 1024,
		LogOutput:      io.Discard,
	}
}

// Session is an established link: a yamux session over TLS, and the
// authenticated peer at the other end.
type Session struct {
	*yamux.Session
	// Peer is the other end's peer ID, proven by the TLS handshake.
	Peer PeerID
	// Conn is the TLS connection under the session.
	Conn *tls.Conn
}

// Client runs the client side of the handshake on conn: TLS 1.3 with the
// identity's certificate, accepting the server only if its key is want. On
// success the caller owns the Session; on failure conn is closed.
func Client(ctx context.Context, conn net.Conn, cfg Config, want PeerID) (*Session, error) {
	return client(ctx, conn, cfg, &want)
}

// ClientUnpinned is Client for a server whose peer ID is not known yet (an
// address learned from the DHT): it accepts any ed25519 key the server
// proves it holds, and Session.Peer says which. Whatever the caller learns
// over such a session about the exit must be checked against Session.Peer.
func ClientUnpinned(ctx context.Context, conn net.Conn, cfg Config) (*Session, error) {
	return client(ctx, conn, cfg, nil)
}

func client(ctx context.Context, conn net.Conn, cfg Config, want *PeerID) (*Session, error) {
	tc, err := cfg.tlsConfig(want)
	if err != nil {
		conn.Close()
		return nil, err
	}
	bconn := newBatched(conn)
	tconn := tls.Client(bconn, tc)
	peer, err := cfg.handshake(ctx, tconn)
	if err != nil {
		return nil, err
	}
	mux, err := yamux.Client(framed(tconn, bconn), cfg.yamuxConfig(), cfg.MemoryManager)
	if err != nil {
		tconn.Close()
		return nil, err
	}
	return &Session{Session: mux, Peer: peer, Conn: tconn}, nil
}

// Server runs the server side of the handshake on conn. It accepts any
// client whose certificate carries an ed25519 key; allow, when not nil, can
// refuse a peer ID, and the refused client learns only that the handshake
// failed. On failure conn is closed.
func Server(ctx context.Context, conn net.Conn, cfg Config, allow func(PeerID) bool) (*Session, error) {
	tc, err := cfg.tlsConfig(nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if allow != nil {
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			id, err := peerIDOf(cs.PeerCertificates)
			if err != nil {
				return err
			}
			if !allow(id) {
				return fmt.Errorf("client %s is not on the allow-list", id.Short())
			}
			return nil
		}
	}
	bconn := newBatched(conn)
	tconn := tls.Server(bconn, tc)
	peer, err := cfg.handshake(ctx, tconn)
	if err != nil {
		return nil, err
	}
	mux, err := yamux.Server(framed(tconn, bconn), cfg.yamuxConfig(), cfg.MemoryManager)
	if err != nil {
		tconn.Close()
		return nil, err
	}
	return &Session{Session: mux, Peer: peer, Conn: tconn}, nil
}

// Dial connects to an exit and runs the client handshake, pinning exit.ID.
func Dial(ctx context.Context, cfg Config, exit ExitAddr) (*Session, error) {
	conn, err := dialTCP(ctx, exit.Addr)
	if err != nil {
		return nil, err
	}
	return Client(ctx, conn, cfg, exit.ID)
}

// DialUnpinned connects to addr (HOST:PORT) and runs the client handshake
// without a pinned peer ID: see ClientUnpinned. Only discovery of exits by
// address uses it; everything else pins.
func DialUnpinned(ctx context.Context, cfg Config, addr string) (*Session, error) {
	conn, err := dialTCP(ctx, addr)
	if err != nil {
		return nil, err
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

func (cfg *Config) handshake(ctx context.Context, tconn *tls.Conn) (PeerID, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.handshakeTimeout())
	defer cancel()
	if err := tconn.HandshakeContext(ctx); err != nil {
		tconn.Close()
		return PeerID{}, fmt.Errorf("tls handshake: %w", err)
	}
	cs := tconn.ConnectionState()
	if cs.NegotiatedProtocol != ALPN {
		tconn.Close()
		return PeerID{}, fmt.Errorf("peer does not speak %s (offered %q)", ALPN, cs.NegotiatedProtocol)
	}
	id, err := peerIDOf(cs.PeerCertificates)
	if err != nil {
		tconn.Close()
		return PeerID{}, err
	}
	return id, nil
}

// tlsConfig returns the TLS configuration for one handshake. want is the
// pinned server ID on the client side (nil for an unpinned client) and nil
// on the server side.
func (cfg *Config) tlsConfig(want *PeerID) (*tls.Config, error) {
	if cfg.Identity == nil {
		return nil, errors.New("link: no identity configured")
	}
	cert, err := cfg.Identity.certificate()
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		// There is no CA: a peer is its key. Chain verification is replaced
		// by checking the key itself (VerifyPeerCertificate below); TLS 1.3
		// has the peer prove it holds that key in CertificateVerify.
		InsecureSkipVerify:     true,
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		// Full-size records from the first byte: a link carries bulk data,
		// and small writes stay small records anyway.
		DynamicRecordSizingDisabled: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, 0, len(raw))
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs = append(certs, c)
			}
			id, err := peerIDOf(certs)
			if err != nil {
				return err
			}
			if want != nil && id != *want {
				return fmt.Errorf("%w: got %s, pinned %s", ErrPeerMismatch, id, *want)
			}
			return nil
		},
	}
	return tc, nil
}

func peerIDOf(certs []*x509.Certificate) (PeerID, error) {
	if len(certs) != 1 {
		return PeerID{}, fmt.Errorf("peer sent %d certificates, want 1", len(certs))
	}
	pub, ok := certs[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return PeerID{}, fmt.Errorf("peer certificate holds a %T key, want ed25519", certs[0].PublicKey)
	}
	return PeerID(pub), nil
}

// certificate returns the identity's self-signed certificate, made once.
func (i *Identity) certificate() (tls.Certificate, error) {
	i.certOnce.Do(func() {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			NotBefore:    time.Unix(0, 0),
			NotAfter:     time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		}
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
		if err == nil {
			tmpl.SerialNumber = serial
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, i.key.Public(), i.key)
		if err != nil {
			i.certErr = err
			return
		}
		i.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: i.key}
	})
	return i.cert, i.certErr
}
