package client_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/swarmvpn/swarmvpn/client"
)

// TestStateDirLocked: a second client on the same state dir fails New
// with one line naming the first one's process, and starts once the first
// has stopped, by Close or at the end of Run.
func TestStateDirLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := func() client.Config {
		return client.Config{Identity: newID(t), Exits: anExit(t), SOCKS: "127.0.0.1:0", StateDir: dir}
	}
	first, err := client.New(cfg())
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.New(cfg())
	want := fmt.Sprintf("the state dir %s is in use by another 'swarmvpn connect' (pid %d)", dir, os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("second client: %v, want %q", err, want)
	}
	first.Close()

	second, err := client.New(cfg())
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx) }()
	if _, err := client.New(cfg()); err == nil {
		t.Error("a third client started beside a running one")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	third, err := client.New(cfg())
	if err != nil {
		t.Fatalf("after Run returned: %v", err)
	}
	third.Close()
}

// TestSOCKSPortNamesHTTPProxy: an HTTP request sent to the SOCKS5 port by
// mistake is answered 400 with the HTTP proxy's actual address.
func TestSOCKSPortNamesHTTPProxy(t *testing.T) {
	c, err := client.New(client.Config{Identity: newID(t), Exits: anExit(t), SOCKS: "127.0.0.1:0", HTTP: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	conn, err := net.Dial("tcp", c.SOCKSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "The HTTP proxy is at "+c.HTTPAddr()) {
		t.Fatalf("%s: %q, want 400 naming %s", resp.Status, body, c.HTTPAddr())
	}
}
