package portfwd

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

func TestLoopbackFor(t *testing.T) {
	tests := map[string]string{
		"203.0.113.7":    "127.0.113.7",
		"10.0.0.1":       "127.0.0.129", // 127.0.0.1 is avoided
		"::ffff:1.2.3.4": "127.2.3.4",
	}
	for in, want := range tests {
		if got := LoopbackFor(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("LoopbackFor(%s) = %s, want %s", in, got, want)
		}
	}
	a, b := LoopbackFor(netip.MustParseAddr("2001:db8::1")), LoopbackFor(netip.MustParseAddr("2001:db8::2"))
	if !a.IsLoopback() || a == b {
		t.Errorf("IPv6 peers map to %s and %s", a, b)
	}
}

func TestTargetDialsFromPeerAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			got <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}
	}()
	c, err := Target{Addr: ln.Addr().String()}.Dial(context.Background(), netip.MustParseAddrPort("198.51.100.23:51413"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := "127.0.0.1"
	if runtime.GOOS == "linux" {
		want = "127.51.100.23"
	}
	if ip := <-got; ip != want {
		t.Fatalf("target saw %s, want %s", ip, want)
	}
}

func TestAnnouncer(t *testing.T) {
	dir := t.TempDir()
	portFile, hookOut := filepath.Join(dir, "port"), filepath.Join(dir, "hook")
	a := &Announcer{PortFile: portFile, Hook: "echo port={{PORT}} env=$SWARMVPN_PORT > " + hookOut}
	a.Announce(context.Background(), 0)
	if _, err := os.Stat(portFile); err == nil {
		t.Fatal("port 0 was announced")
	}
	for _, port := range []uint16{40123, 40124} {
		a.Announce(context.Background(), port)
		b, _ := os.ReadFile(portFile)
		h, _ := os.ReadFile(hookOut)
		if string(b) != itoa(port)+"\n" {
			t.Fatalf("port file %q, want %q", b, itoa(port)+"\n")
		}
		if string(h) != "port="+itoa(port)+" env="+itoa(port)+"\n" {
			t.Fatalf("hook wrote %q", h)
		}
		if a.Port() != port {
			t.Fatalf("Port() = %d", a.Port())
		}
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
