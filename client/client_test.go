package client_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

func newID(t *testing.T) *link.Identity {
	t.Helper()
	id, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// anExit is an address New accepts; nothing is dialed before Run.
func anExit(t *testing.T) []link.ExitAddr {
	return []link.ExitAddr{{ID: newID(t).ID(), Addr: "127.0.0.1:9"}}
}

// TestNewRefuses: bad values fail New with one line that says what to
// change, and leave no listener and no control socket behind.
func TestNewRefuses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	id, exits := newID(t), anExit(t)
	for _, tt := range []struct {
		name string
		cfg  client.Config
		want string
	}{
		{"no exit", client.Config{}, "no exit given"},
		{"no identity", client.Config{Identity: nil, MDNS: true}, "no identity"},
		{"user without pass", client.Config{SOCKSUser: "u"}, "--socks-user and --socks-pass go together"},
		{"socks facing the LAN", client.Config{SOCKS: "0.0.0.0:1080"}, "--socks 0.0.0.0:1080 would let anyone"},
		{"http facing the LAN", client.Config{HTTP: ":8118"}, "--http :8118 would let anyone"},
		{"bad forward", client.Config{Forward: "localhost:80"}, `--forward "localhost:80": want HOST:PORT with an IP address`},
		{"malformed socks", client.Config{SOCKS: "1080"}, `--socks "1080": want HOST:PORT`},
		{"socks port in use", client.Config{SOCKS: busy.Addr().String()}, "already in use"},
		{"http port in use", client.Config{HTTP: busy.Addr().String()}, "choose another with --http"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if tt.name != "no identity" {
				cfg.Identity = id
			}
			if tt.name != "no exit" {
				cfg.Exits = exits
			}
			socks := testnet.RestartableAddr(t)
			if cfg.SOCKS == "" {
				cfg.SOCKS = socks
			}
			cfg.StateDir = t.TempDir()
			c, err := client.New(cfg)
			if err == nil {
				c.Close()
				t.Fatalf("New accepted %+v", tt.cfg)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("New: %v\nwant one line with %q", err, tt.want)
			}
			// Nothing is left open: the SOCKS address is free again and no
			// control socket exists.
			if cfg.SOCKS == socks {
				ln, err := net.Listen("tcp", socks)
				if err != nil {
					t.Fatalf("the SOCKS listener was left open: %v", err)
				}
				ln.Close()
			}
			if _, err := os.Lstat(filepath.Join(cfg.StateDir, client.ControlSocketName)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("control socket left behind: %v", err)
			}
		})
	}
}

// TestCloseWithoutRun: Close frees the listeners of a client that never
// ran, may be called twice, and Run after it refuses to start.
func TestCloseWithoutRun(t *testing.T) {
	dir := t.TempDir()
	socks, http := testnet.RestartableAddr(t), testnet.RestartableAddr(t)
	c, err := client.New(client.Config{Identity: newID(t), Exits: anExit(t), SOCKS: socks, HTTP: http, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, client.ControlSocketName)); err != nil {
		t.Fatalf("New opened no control socket: %v", err)
	}
	c.Close()
	c.Close()
	for _, addr := range []string{socks, http} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s still in use after Close: %v", addr, err)
		}
		ln.Close()
	}
	if _, err := os.Lstat(filepath.Join(dir, client.ControlSocketName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("control socket left after Close: %v", err)
	}
	if err := c.Run(t.Context()); err == nil {
		t.Fatal("Run after Close started")
	}
}

// TestRun: a client carries a flow through an exit, reports it on its
// control socket, and Run returns once ctx ends with the socket removed.
func TestRun(t *testing.T) {
	target := testnet.StartTarget(t, "127.0.0.1:0", testnet.Echo)
	ex := testnet.StartExitNode(t, exit.Config{}, "127.0.0.1:0")
	dir := t.TempDir()
	c, err := client.New(client.Config{Identity: newID(t), Exits: []link.ExitAddr{ex.Addr}, Forward: "off",
		SOCKS: "127.0.0.1:0", HTTP: "127.0.0.1:0", StateDir: dir,
		Tuning: client.Tuning{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	conn, _, err := testnet.SOCKS5Dial(t.Context(), c.SOCKSAddr(), target.Addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "hello")
	conn.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo through the client: %q, %v", got, err)
	}

	r := c.Report()
	if r.Link != "up" || r.Exit != ex.Addr.String() || r.SOCKS != c.SOCKSAddr() || r.HTTP != c.HTTPAddr() ||
		r.Traffic == nil || r.Traffic.Flows != 1 || len(r.Exits) != 1 {
		t.Fatalf("report %+v", r)
	}
	if s := c.Stats(); s.BytesIn != 5 || s.BytesOut != 5 {
		t.Fatalf("stats: %d bytes in, %d out; want 5 and 5", s.BytesIn, s.BytesOut)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, client.ControlSocketName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("control socket left after Run: %v", err)
	}
	c.Close() // after Run: nothing to do
}
