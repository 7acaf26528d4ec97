package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/testnet"
	"github.com/swarmvpn/swarmvpn/internal/wire"
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

// squatForward links to exit as a throwaway identity, asks for a port and
// leaves at once, as someone denying the range to others would; it returns
// the exit's answer.
func squatForward(t *testing.T, exit link.ExitAddr) wire.Status {
	t.Helper()
	id, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sess, err := link.Dial(ctx, link.Config{Identity: id}, exit)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := wire.Call(ctx, st, wire.Request{Kind: wire.KindForward}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status
}

// TestBinaryForwardSquatters: eleven throwaway identities take every port
// of an exit's eleven and leave; a new client still gets a port, and after
// the exit restarts (keeping the reservations in forward-leases.json) the
// first client gets its own port back and another new client one too. One
// network's leases per hour are bounded, with a status of their own.
func TestBinaryForwardSquatters(t *testing.T) {
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
	key := filepath.Join(dir, "exit.key")
	if _, errOut, code := run(t, "keygen", "--key", key); code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	lo := 10000 + rand.N(9000) // below the ephemeral ports, which the links' sockets take

	listenAddr := testnet.RestartableAddr(t)
	startExit := func() (*proc, link.ExitAddr) {
		p := start(t, "exit", "--key", key, "--state-dir", filepath.Join(dir, "exit"), "--listen", listenAddr, "--allow-private",
			"--forward-ports", strconv.Itoa(lo)+"-"+strconv.Itoa(lo+10), "--forward-new-per-hour", "12", "--log-format", "json")
		select {
		case line := <-p.stdout:
			a, err := link.ParseExitAddr(strings.TrimSpace(line))
			if err != nil {
				t.Fatalf("exit printed %q: %v", line, err)
			}
			return p, a
		case <-time.After(15 * time.Second):
			t.Fatal("exit printed no address")
		}
		return nil, link.ExitAddr{}
	}
	exitProc, exitAddr := startExit()
	for i := range 11 {
		if st := squatForward(t, exitAddr); st != wire.StatusOK {
			t.Fatalf("squatter %d: %v", i, st)
		}
		exitProc.waitLog(t, "forward closed")
	}
	connect := func(name string) (*proc, int) {
		p := start(t, "connect", "--state-dir", filepath.Join(dir, name), "--exit", exitAddr.String(),
			"--socks", "127.0.0.1:0", "--http", "off", "--log-format", "json", "--forward", app.Addr().String())
		port, _ := p.waitLog(t, "forwarded port")["port"].(float64)
		return p, int(port)
	}
	clientA, portA := connect("a")
	if portA < lo || portA > lo+10 {
		t.Fatalf("client a got port %d, want one of %d-%d", portA, lo, lo+10)
	}
	// The twelfth lease from 127.0.0.0/24 this hour was client a's; a
	// thirteenth is refused for that reason.
	if st := squatForward(t, exitAddr); st != wire.StatusForwardRateLimit {
		t.Fatalf("a thirteenth lease from one network: %v, want %v", st, wire.StatusForwardRateLimit)
	}

	exitProc.stop(t)
	exitProc, _ = startExit()
	_, portB := connect("b")
	if again, _ := clientA.waitLog(t, "forwarded port")["port"].(float64); int(again) != portA {
		t.Fatalf("after the restart client a got port %v, want its own %d back", again, portA)
	}
	if portB < lo || portB > lo+10 || portB == portA {
		t.Fatalf("after the restart client b got port %d, want one of %d-%d other than a's %d", portB, lo, lo+10, portA)
	}
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(portB))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hello b")
	c.(*net.TCPConn).CloseWrite()
	if got, _ := io.ReadAll(c); string(got) != "hello b" {
		t.Fatalf("echo through b's forwarded port: %q", got)
	}
}
