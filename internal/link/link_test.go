package link

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustIdentity(t testing.TB) *Identity {
	t.Helper()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// pair returns connected conns over a pipe or loopback TCP.
func pair(t *testing.T, transport string) (net.Conn, net.Conn) {
	t.Helper()
	if transport == "pipe" {
		a, b := net.Pipe()
		return a, b
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return a, r.c
}

type handshakeResult struct {
	s   *Session
	err error
}

// handshake runs both sides concurrently.
func handshake(t *testing.T, transport string, client, server *Identity, pin PeerID, allow func(PeerID) bool) (cli, srv handshakeResult) {
	t.Helper()
	a, b := pair(t, transport)
	ctx := t.Context()
	ch := make(chan handshakeResult, 1)
	go func() {
		s, err := Server(ctx, b, Config{Identity: server}, allow)
		ch <- handshakeResult{s, err}
	}()
	s, err := Client(ctx, a, Config{Identity: client}, pin)
	cli = handshakeResult{s, err}
	srv = <-ch
	t.Cleanup(func() {
		for _, r := range []handshakeResult{cli, srv} {
			if r.s != nil {
				r.s.Close()
			}
		}
	})
	return cli, srv
}

func TestLinkCarriesStreams(t *testing.T) {
	for _, transport := range []string{"pipe", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			clientID, exitID := mustIdentity(t), mustIdentity(t)
			cli, srv := handshake(t, transport, clientID, exitID, exitID.ID(), nil)
			if cli.err != nil || srv.err != nil {
				t.Fatalf("handshake: client %v, server %v", cli.err, srv.err)
			}
			if cli.s.Peer != exitID.ID() || srv.s.Peer != clientID.ID() {
				t.Fatalf("peers: client sees %s, server sees %s", cli.s.Peer, srv.s.Peer)
			}
			if v := srv.s.Conn.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS13 {
				t.Fatalf("TLS version %x, want 1.3", v)
			}
			if cli.s.Version != Version || srv.s.Version != Version {
				t.Fatalf("link protocol versions %d and %d, want %d", cli.s.Version, srv.s.Version, Version)
			}

			payload := make([]byte, 3<<20)
			rand.Read(payload)
			done := make(chan []byte, 1)
			go func() {
				st, err := srv.s.AcceptStream()
				if err != nil {
					done <- nil
					return
				}
				got, _ := io.ReadAll(st)
				st.Write(got[len(got)-16:]) // echo the tail after the client's half-close
				st.Close()
				done <- got
			}()
			st, err := cli.s.OpenStream(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write(payload); err != nil {
				t.Fatal(err)
			}
			st.CloseWrite()
			tail, err := io.ReadAll(st)
			if err != nil {
				t.Fatal(err)
			}
			if got := <-done; !bytes.Equal(got, payload) {
				t.Fatalf("server got %d bytes, want %d identical", len(got), len(payload))
			}
			if !bytes.Equal(tail, payload[len(payload)-16:]) {
				t.Fatalf("reply after half-close: % x", tail)
			}
		})
	}
}

func TestLinkRefusesWrongPin(t *testing.T) {
	for _, transport := range []string{"pipe", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			clientID, exitID, other := mustIdentity(t), mustIdentity(t), mustIdentity(t)
			cli, srv := handshake(t, transport, clientID, exitID, other.ID(), nil)
			if !errors.Is(cli.err, ErrPeerMismatch) {
				t.Fatalf("client: %v, want ErrPeerMismatch", cli.err)
			}
			// The exit proved itself last; the client then hung up.
			if srv.err == nil {
				<-srv.s.CloseChan()
			}
		})
	}
}

func TestLinkAllowList(t *testing.T) {
	clientID, exitID := mustIdentity(t), mustIdentity(t)
	var asked PeerID
	cli, srv := handshake(t, "tcp", clientID, exitID, exitID.ID(), func(id PeerID) bool { asked = id; return false })
	if !errors.Is(srv.err, ErrFallback) || !strings.Contains(srv.err.Error(), "not admitted") {
		t.Fatalf("server: %v, want a refusal handed to the fallback", srv.err)
	}
	if asked != clientID.ID() {
		t.Fatalf("allow-list asked about %s, want %s", asked, clientID.ID())
	}
	if !errors.Is(cli.err, ErrRefused) {
		t.Fatalf("client: %v, want ErrRefused", cli.err)
	}
}

func TestIdentityFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "key")
	id, created, err := LoadOrCreateIdentity(path)
	if err != nil || !created {
		t.Fatalf("first load: created %v, %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	again, created, err := LoadOrCreateIdentity(path)
	if err != nil || created || again.ID() != id.ID() {
		t.Fatalf("second load: created %v, same ID %v, %v", created, again.ID() == id.ID(), err)
	}
	if err := id.Save(path); err == nil {
		t.Fatal("Save overwrote an existing key")
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	if _, err := LoadIdentity(bad); err == nil || !strings.Contains(err.Error(), "PEM") {
		t.Fatalf("LoadIdentity(garbage) = %v, want a PEM error", err)
	}
}

func TestPeerIDText(t *testing.T) {
	id := mustIdentity(t).ID()
	s := id.String()
	if len(s) != 52 || strings.ToLower(s) != s {
		t.Fatalf("peer ID text %q: want 52 lowercase characters", s)
	}
	back, err := ParsePeerID(s)
	if err != nil || back != id {
		t.Fatalf("ParsePeerID(%q) = %v, %v", s, back, err)
	}
	if back, err := ParsePeerID(strings.ToUpper(s)); err != nil || back != id {
		t.Fatalf("upper case: %v, %v", back, err)
	}
	for _, bad := range []string{"", s[:51], s + "a", s[:51] + "1", s[:51] + "!"} {
		if _, err := ParsePeerID(bad); err == nil {
			t.Errorf("ParsePeerID(%q) accepted", bad)
		}
	}
}

func TestParseExitAddr(t *testing.T) {
	id := mustIdentity(t).ID()
	good := []struct{ in, want string }{
		{id.String() + "@127.0.0.1:7843", "127.0.0.1:7843"},
		{id.String() + "@[::1]:7843", "[::1]:7843"},
		{id.String() + "@exit.example:443", "exit.example:443"},
		{id.String() + "@127.0.0.1:65535", "127.0.0.1:65535"},
		{" " + id.String() + "@127.0.0.1:7843\t\n", "127.0.0.1:7843"}, // pasted with space around it
	}
	for _, tt := range good {
		a, err := ParseExitAddr(tt.in)
		if err != nil || a.ID != id || a.Addr != tt.want {
			t.Errorf("ParseExitAddr(%q) = %v, %v; want address %s", tt.in, a, err, tt.want)
		}
	}
	bad := []struct{ in, want string }{
		{"127.0.0.1:7843", "PEERID@HOST:PORT"},
		{id.String() + "@127.0.0.1", "not HOST:PORT"},
		{id.String() + "@:7843", "not HOST:PORT"},
		{"abc@127.0.0.1:7843", "peer ID"},
		{id.String(), "PEERID@HOST:PORT"},
		{id.String() + "@127.0.0.1:baz", "not a number from 1 to 65535"},
		{id.String() + "@127.0.0.1:99999", "not a number from 1 to 65535"},
		{id.String() + "@127.0.0.1:0", "not a number from 1 to 65535"},
		{id.String() + "@127.0.0.1:-1", "not a number from 1 to 65535"},
		{id.String() + "@127.0.0.1:+80", "not a number from 1 to 65535"},
		{id.String() + "@127.0.0.1:78 43", "not a number from 1 to 65535"},
	}
	for _, tt := range bad {
		if _, err := ParseExitAddr(tt.in); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseExitAddr(%q) = %v, want an error saying %q", tt.in, err, tt.want)
		}
	}
}

func TestDialRespectsContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A server that accepts and never speaks: the handshake must end with ctx.
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	ctx, cancel := context.WithCancel(t.Context())
	exit := ExitAddr{ID: mustIdentity(t).ID(), Addr: ln.Addr().String()}
	errc := make(chan error, 1)
	go func() { _, err := Dial(ctx, Config{Identity: mustIdentity(t)}, exit); errc <- err }()
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("Dial succeeded against a silent server")
	}
}

// FuzzParseExitAddr: exit addresses come from users and, inside signed
// descriptors, from other peers. Whatever the text, parsing never panics,
// and what it accepts prints back as an address that parses to the same.
func FuzzParseExitAddr(f *testing.F) {
	id := mustIdentity(f).ID().String()
	for _, s := range []string{id + "@127.0.0.1:7843", id + "@[::1]:7843", id + "@exit.example:443",
		"abc@127.0.0.1:7843", id + "@", "@:", strings.ToUpper(id) + "@h:1", id + "@[fe80::1%eth0]:1",
		" " + id + "@h:99999 ", id + "@h:0080"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseExitAddr(s)
		if err != nil {
			return
		}
		b, err := ParseExitAddr(a.String())
		if err != nil || b != a {
			t.Fatalf("%q parsed to %v, which parses back to %v, %v", s, a, b, err)
		}
	})
}
