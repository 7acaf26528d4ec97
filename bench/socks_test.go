package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/socks"
	"github.com/swarmvpn/swarmvpn/internal/testnet"
	"github.com/swarmvpn/swarmvpn/proxy"
)

// startTargets serves targets on loopback until the test ends.
func startTargets(t *testing.T) *Targets {
	t.Helper()
	tg, err := ListenTargets("127.0.0.1", 0, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tg.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return tg
}

// startSOCKS serves cfg's SOCKS5 proxy on loopback until the test ends.
func startSOCKS(t *testing.T, cfg proxy.SOCKSConfig) string {
	t.Helper()
	s, err := proxy.NewSOCKS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.Serve(ctx, ln) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ln.Addr().String()
}

func echoThrough(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("Ehello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// TestSOCKS5Tunnel speaks CONNECT and UDP ASSOCIATE through swarmvpn's
// whole path, in process.
func TestSOCKS5Tunnel(t *testing.T) {
	tp := testnet.Start(t, testnet.Options{})
	tg := startTargets(t)
	s := SOCKS5{Addr: tp.SOCKS}
	c, err := s.Dial(t.Context(), tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, c)

	u, err := associate(t.Context(), s, tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	buf := make([]byte, 2048)
	for try := 0; ; try++ { // the association reaches the exit a moment later
		if err := u.Send([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		u.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		p, err := u.Recv(buf)
		if err == nil {
			if string(p) != "ping" {
				t.Fatalf("UDP echo %q, want ping", p)
			}
			break
		}
		if try == 50 {
			t.Fatalf("no UDP echo: %v", err)
		}
	}
}

func TestSOCKS5Refusals(t *testing.T) {
	tg := startTargets(t)
	plain := startSOCKS(t, proxy.SOCKSConfig{Dialer: &net.Dialer{}})
	c, err := SOCKS5{Addr: plain}.Dial(t.Context(), tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, c)
	_, err = associate(t.Context(), SOCKS5{Addr: plain}, tg.Addr)
	if re, ok := errors.AsType[*socks.ReplyError](err); !ok || re.Code != 7 {
		t.Fatalf("UDP ASSOCIATE without an associator: %v, want reply 7", err)
	}
	if !strings.Contains(err.Error(), "command not supported") {
		t.Errorf("error %q does not say what the reply means", err)
	}

	authed := startSOCKS(t, proxy.SOCKSConfig{Dialer: &net.Dialer{}, Username: "u", Password: "p"})
	if _, err := (SOCKS5{Addr: authed}).Dial(t.Context(), tg.Addr); !errors.Is(err, socks.ErrNoMethod) {
		t.Errorf("no credentials: %v, want ErrNoMethod", err)
	}
	if _, err := (SOCKS5{Addr: authed, User: "u", Pass: "wrong"}).Dial(t.Context(), tg.Addr); err == nil {
		t.Errorf("wrong password accepted")
	}
	c, err = SOCKS5{Addr: authed, User: "u", Pass: "p"}.Dial(t.Context(), tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, c)
}

func TestProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()

	notSOCKS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer notSOCKS.Close()
	go func() {
		for {
			c, err := notSOCKS.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.0 400 Bad Request\r\n\r\n")
			c.Close()
		}
	}()
	plain := startSOCKS(t, proxy.SOCKSConfig{Dialer: &net.Dialer{}})
	authed := startSOCKS(t, proxy.SOCKSConfig{Dialer: &net.Dialer{}, Username: "u", Password: "p"})

	tests := []struct {
		s    SOCKS5
		want string // "" for no error
	}{
		{SOCKS5{Addr: plain}, ""},
		{SOCKS5{Addr: authed, User: "u", Pass: "p"}, ""},
		{SOCKS5{Addr: free}, "connection refused"},
		{SOCKS5{Addr: notSOCKS.Addr().String()}, "does not answer as a SOCKS5 proxy"},
		{SOCKS5{Addr: authed}, "USER:PASS@HOST:PORT"},
	}
	for _, tt := range tests {
		err := Probe(t.Context(), tt.s)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Probe(%s): %v", tt.s.Addr, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Probe(%s) = %v, want an error mentioning %q", tt.s.Addr, err, tt.want)
		}
	}
}
