package main

import (
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBinaryForward: an exit that lends ports and a client that asks for
// one, as processes. The port lands in the port file and the hook runs, and
// a peer connecting to the exit's port reaches the client's local app.
func TestBinaryForward(t *testing.T) {
	dir := t.TempDir()
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	lo := 42000 + rand.N(15000)
	exit := start(t, "exit", "--state-dir", filepath.Join(dir, "exit"), "--listen", "127.0.0.1:0", "--allow-private",
		"--forward-ports", strconv.Itoa(lo)+"-"+strconv.Itoa(lo+31), "--log-format", "json")
	var exitAddr string
	select {
	case exitAddr = <-exit.stdout:
	case <-time.After(15 * time.Second):
		t.Fatal("exit printed no address")
	}
	portFile, hookFile := filepath.Join(dir, "port"), filepath.Join(dir, "hook")
	client := start(t, "connect", "--state-dir", filepath.Join(dir, "client"), "--exit", exitAddr,
		"--socks", "127.0.0.1:0", "--http", "off", "--log-format", "json",
		"--forward", app.Addr().String(), "--port-file", portFile, "--on-port", "echo {{PORT}} > "+hookFile)
	client.waitLog(t, "forwarded port")

	var port int
	deadline := time.After(15 * time.Second)
	for port == 0 {
		if b, err := os.ReadFile(hookFile); err == nil && strings.HasSuffix(string(b), "\n") {
			port, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		select {
		case <-deadline:
			t.Fatal("the hook never ran")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if port < lo || port > lo+31 {
		t.Fatalf("forwarded port %d outside %d-%d", port, lo, lo+31)
	}
	if b, err := os.ReadFile(portFile); err != nil || string(b) != strconv.Itoa(port)+"\n" {
		t.Fatalf("port file %q (%v), want %d", b, err, port)
	}

	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hello from a peer")
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	if string(got) != "hello from a peer" {
		t.Fatalf("echo through the forwarded port: %q", got)
	}
}
