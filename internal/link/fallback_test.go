package link

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// fallbackServer runs Server on one end of a loopback pair with a
// Fallback that records what it is handed, and returns the other end.
type fallbackResult struct {
	err   error
	proto string
	first []byte // the first bytes the fallback reads
}

func serveWithFallback(t *testing.T, exitID *Identity, cfg Config, allow func(PeerID) bool) (net.Conn, <-chan fallbackResult) {
	t.Helper()
	a, b := pair(t, "tcp")
	t.Cleanup(func() { a.Close() })
	ch := make(chan fallbackResult, 1)
	cfg.Identity = exitID
	go func() {
		var res fallbackResult
		cfg.Fallback = func(conn net.Conn, proto string) {
			res.proto = proto
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			n, _ := io.ReadAtLeast(conn, buf, 1)
			res.first = buf[:n]
			conn.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			conn.Close()
		}
		s, err := Server(t.Context(), b, cfg, allow)
		if s != nil {
			s.Close()
		}
		res.err = err
		ch <- res
	}()
	return a, ch
}

// plainClient is a TLS client that is not a link client: a browser, a
// prober.
func plainClient(t *testing.T, conn net.Conn, protos ...string) *tls.Conn {
	t.Helper()
	c := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: "example.com", NextProtos: protos})
	if err := c.HandshakeContext(t.Context()); err != nil {
		t.Fatalf("a plain TLS client's handshake with the exit: %v", err)
	}
	if len(c.ConnectionState().PeerCertificates) != 1 {
		t.Fatal("the exit sent no certificate")
	}
	return c
}

// TestProbeGetsFallback: whatever a TLS client that is not a link client
// sends first (an HTTP request, garbage) reaches the fallback unchanged,
// with the protocol the handshake negotiated, and the exit never asked
// for a client certificate.
func TestProbeGetsFallback(t *testing.T) {
	tests := []struct {
		name   string
		protos []string
		send   []byte
	}{
		{"http/1.1 request", []string{"http/1.1"}, []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")},
		{"h2 preface", []string{"h2", "http/1.1"}, []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")},
		{"no alpn, one byte", nil, []byte{0x16}},
		{"garbage", []string{"h2"}, bytes.Repeat([]byte{0xa5}, 300)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, res := serveWithFallback(t, mustIdentity(t), Config{}, nil)
			c := plainClient(t, conn, tt.protos...)
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			reply, _ := io.ReadAll(c)
			r := <-res
			if !errors.Is(r.err, ErrFallback) {
				t.Fatalf("Server: %v, want ErrFallback", r.err)
			}
			want := "http/1.1"
			if len(tt.protos) == 0 {
				want = ""
			} else if tt.protos[0] == "h2" {
				want = "h2"
			}
			if r.proto != want {
				t.Fatalf("fallback got protocol %q, want %q", r.proto, want)
			}
			if !bytes.HasPrefix(tt.send, r.first) || len(r.first) == 0 {
				t.Fatalf("fallback read % x first, want a prefix of % x", r.first, tt.send)
			}
			if !bytes.HasPrefix(reply, []byte("HTTP/1.1 400")) {
				t.Fatalf("prober read %q, want the fallback's answer", reply)
			}
		})
	}
}

// TestReplayedProofGoesToFallback: a client's proof is valid for its own
// TLS session only; sent in another session it is handed to the fallback,
// bytes and all, like any other stranger's.
func TestReplayedProofGoesToFallback(t *testing.T) {
	exitID, clientID := mustIdentity(t), mustIdentity(t)
	var recorded []byte
	{
		conn, res := serveWithFallback(t, exitID, Config{}, nil)
		c := plainClient(t, conn, "h2")
		cs := c.ConnectionState()
		ek, err := exportKey(&cs)
		if err != nil {
			t.Fatal(err)
		}
		recorded = proof(clientID, ek, clientTag(ek), []byte{minVersion, Version}, clientContext)
		c.Write(recorded)
		if _, err := readExitTag(c, ek); err != nil {
			t.Fatalf("the original proof was not accepted: %v", err)
		}
		c.Close()
		<-res
	}
	conn, res := serveWithFallback(t, exitID, Config{}, nil)
	c := plainClient(t, conn, "h2")
	c.Write(recorded)
	io.ReadAll(c)
	r := <-res
	if !errors.Is(r.err, ErrFallback) || !errors.Is(r.err, errNotClient) {
		t.Fatalf("Server: %v, want the replay handed to the fallback as not a client", r.err)
	}
	if !bytes.HasPrefix(recorded, r.first) || len(r.first) == 0 {
		t.Fatalf("fallback read % x, want the replayed bytes", r.first)
	}
}

// TestForgedProofGoesToFallback: the right tag with a signature by a key
// other than the peer ID's is not a client either.
func TestForgedProofGoesToFallback(t *testing.T) {
	conn, res := serveWithFallback(t, mustIdentity(t), Config{}, nil)
	c := plainClient(t, conn, "h2")
	cs := c.ConnectionState()
	ek, _ := exportKey(&cs)
	p := proof(mustIdentity(t), ek, clientTag(ek), []byte{minVersion, Version}, clientContext)
	copy(p[tagLen+2:], make([]byte, 32)) // claim another peer ID
	c.Write(p)
	io.ReadAll(c)
	if r := <-res; !errors.Is(r.err, ErrFallback) {
		t.Fatalf("Server: %v, want ErrFallback", r.err)
	}
}

// TestOldTLSGoesToFallback: a TLS 1.2 client is served as a web site; a
// link needs 1.3.
func TestOldTLSGoesToFallback(t *testing.T) {
	conn, res := serveWithFallback(t, mustIdentity(t), Config{}, nil)
	c := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	if err := c.Handshake(); err != nil {
		t.Fatalf("TLS 1.2 handshake: %v", err)
	}
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	io.ReadAll(c)
	if r := <-res; !errors.Is(r.err, ErrFallback) {
		t.Fatalf("Server: %v, want ErrFallback", r.err)
	}
}

// TestH2PrefaceComesFirst: on an h2 connection the exit sends its HTTP/2
// SETTINGS before it has read anything, as an HTTP/2 server does; a link
// client skips them, and the fallback does not send them twice.
func TestH2PrefaceComesFirst(t *testing.T) {
	settings := []byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100, 0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 1, 0, 0}
	exitID := mustIdentity(t)

	// A prober that sends nothing still gets the SETTINGS.
	conn, res := serveWithFallback(t, exitID, Config{H2Preface: settings}, nil)
	c := plainClient(t, conn, "h2")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(settings))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, settings) {
		t.Fatalf("before sending anything the prober read % x, %v; want the SETTINGS", got, err)
	}
	c.Close()
	<-res

	// A link client gets through them.
	a, b := pair(t, "tcp")
	srv := make(chan error, 1)
	go func() {
		s, err := Server(t.Context(), b, Config{Identity: exitID, H2Preface: settings}, nil)
		if s != nil {
			s.Close()
		}
		srv <- err
	}()
	s, err := Client(t.Context(), a, Config{Identity: mustIdentity(t)}, exitID.ID())
	if err != nil {
		t.Fatalf("client behind an h2 preface: %v", err)
	}
	s.Close()
	if err := <-srv; err != nil {
		t.Fatal(err)
	}

	// The fallback's own identical SETTINGS are not sent again.
	rc := &replayConn{Conn: nopConn{}, skip: settings}
	if n, err := rc.Write(append(append([]byte{}, settings...), 'x')); err != nil || n != len(settings)+1 {
		t.Fatalf("replayConn.Write = %d, %v", n, err)
	}
}

type nopConn struct{ net.Conn }

func (nopConn) Write(p []byte) (int, error) { return len(p), nil }

// TestClientHelloIsABrowsers: the hello carries an SNI and only browser
// ALPN values, and nothing of this program's name.
func TestClientHelloIsABrowsers(t *testing.T) {
	a, b := pair(t, "tcp")
	hello := make(chan *tls.ClientHelloInfo, 1)
	raw := &recordingConn{Conn: b}
	go func() {
		c := tls.Server(raw, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello <- h
			return nil, errors.New("seen enough")
		}})
		c.Handshake()
		c.Close()
	}()
	exitID := mustIdentity(t)
	Client(t.Context(), a, Config{Identity: mustIdentity(t)}, exitID.ID())
	h := <-hello
	if h.ServerName != HostName(exitID.ID()) {
		t.Fatalf("SNI %q, want %q", h.ServerName, HostName(exitID.ID()))
	}
	if len(h.SupportedProtos) != 2 || h.SupportedProtos[0] != "h2" || h.SupportedProtos[1] != "http/1.1" {
		t.Fatalf("ALPN %q, want h2, http/1.1", h.SupportedProtos)
	}
	if bytes.Contains(bytes.ToLower(raw.read), []byte("swarmvpn")) {
		t.Fatal("the ClientHello names swarmvpn")
	}
}

type recordingConn struct {
	net.Conn
	read []byte
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read = append(c.read, p[:n]...)
	return n, err
}

func TestServerName(t *testing.T) {
	id := mustIdentity(t).ID()
	tests := []struct {
		exit ExitAddr
		want string
	}{
		{ExitAddr{ID: id, Addr: "exit.example.org:443"}, "exit.example.org"},
		{ExitAddr{ID: id, Addr: "203.0.113.7:443"}, HostName(id)},
		{ExitAddr{ID: id, Addr: "[2001:db8::1]:443"}, HostName(id)},
		{ExitAddr{ID: id, Addr: "localhost:443"}, HostName(id)},
		{ExitAddr{Addr: "203.0.113.7:443"}, hostNameOf([]byte("addr\x00203.0.113.7:443"))},
	}
	for _, tt := range tests {
		if got := serverName(tt.exit); got != tt.want {
			t.Errorf("serverName(%v) = %q, want %q", tt.exit, got, tt.want)
		}
	}
	if HostName(id) != HostName(id) || HostName(id) == HostName(mustIdentity(t).ID()) {
		t.Error("HostName is not a function of the ID alone")
	}
}

// TestSelfSignedCertificate: ordinary fields, a year's validity around
// now, the same key across restarts.
func TestSelfSignedCertificate(t *testing.T) {
	id := mustIdentity(t)
	now := time.Now()
	c, err := id.selfSigned("abc.example", now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	if leaf.NotBefore.After(now) || leaf.NotAfter.Before(now) || leaf.NotAfter.Sub(leaf.NotBefore) != certLifetime {
		t.Fatalf("validity %v to %v, want a year around now", leaf.NotBefore, leaf.NotAfter)
	}
	if leaf.Subject.CommonName != "abc.example" || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "abc.example" {
		t.Fatalf("names %q %q", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if leaf.PublicKeyAlgorithm.String() != "ECDSA" {
		t.Fatalf("key %v, want ECDSA", leaf.PublicKeyAlgorithm)
	}
	again := &Identity{key: id.key}
	c2, _ := again.selfSigned("abc.example", now)
	if !c2.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(leaf.PublicKey) || !c2.Leaf.NotBefore.Equal(leaf.NotBefore) {
		t.Fatal("a restart changes the certificate's key or validity")
	}
	later, _ := id.selfSigned("abc.example", leaf.NotAfter.Add(time.Hour))
	if !later.Leaf.NotBefore.Equal(leaf.NotAfter) {
		t.Fatalf("renewed certificate starts %v, want %v", later.Leaf.NotBefore, leaf.NotAfter)
	}
}

// FuzzProof: the proofs are the first bytes a stranger sends; whatever
// they are, reading them never panics nor reads past the bounds.
func FuzzProof(f *testing.F) {
	ek := bytes.Repeat([]byte{7}, exportLen)
	id := mustIdentity(f)
	f.Add(proof(id, ek, clientTag(ek), []byte{2, 2}, clientContext))
	f.Add(proof(id, ek, exitTag(ek), []byte{2}, exitContext))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(append([]byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100}, exitTag(ek)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if tag, err := readClientTag(bytes.NewReader(b), ek); err == nil {
			r := bytes.NewReader(b[tagLen:])
			if _, _, err := readProof(r, ek, tag, 2, clientContext); err == nil && !bytes.HasPrefix(b, clientTag(ek)) {
				t.Fatal("a proof without the tag verified")
			}
		}
		r := bytes.NewReader(b)
		if tag, err := readExitTag(r, ek); err == nil {
			readProof(r, ek, tag, 1, exitContext)
		}
	})
}
