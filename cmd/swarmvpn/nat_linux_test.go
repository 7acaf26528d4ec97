package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/nstest"
	"github.com/swarmvpn/swarmvpn/internal/socks"
)

// TestBinaryExitBehindRouter runs the real binary behind a real home
// router (miniupnpd in network namespaces, see nstest.Router): an exit in
// "home" maps its ports, a client in "internet" that knows only the
// router's public address links to it and carries a download, a peer in
// "internet" reaches the client's local app through the forwarded port
// (TCP and UDP), the mappings go when the exit stops, and with --nat off
// the client cannot link. A router behind a carrier-grade NAT is said so.
func TestBinaryExitBehindRouter(t *testing.T) {
	nstest.RouterTools(t)
	for i, sc := range []struct {
		name, mode, wan string
		full            bool
	}{
		{"auto", "auto", "11.7.0", true}, // NAT-PMP

		{"upnp", "upnp", "11.7.0", false},
		{"doublenat", "auto", "100.64.0", false},
		{"crash", "upnp", "11.7.0", false},
	} {
		t.Run(sc.name, func(t *testing.T) {
			r := nstest.NewRouter(t, fmt.Sprint("b", i), sc.wan)
			r.StartGateway(t)
			switch sc.name {
			case "doublenat":
				doubleNAT(t, r)
				return
			case "crash":
				exitCrashBehindRouter(t, r, sc.mode)
				return
			}
			exitBehindRouter(t, r, sc.mode, sc.full)
		})
	}
}

// inetServer serves, in the internet namespace, a download at
// InetAddr:8080 and a UDP peer at InetAddr:9999 that echoes.
func inetServer(t *testing.T, r *nstest.Router, body []byte) (udpPeer *net.UDPConn) {
	t.Helper()
	var ln net.Listener
	err := nstest.In(r.Inet, func() error {
		var err error
		if ln, err = net.Listen("tcp4", netip.AddrPortFrom(r.InetAddr, 8080).String()); err != nil {
			return err
		}
		udpPeer, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.InetAddr, 9999)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); udpPeer.Close() })
	return udpPeer
}

func exitBehindRouter(t *testing.T, r *nstest.Router, mode string, full bool) {
	dir := t.TempDir()
	body := make([]byte, 1<<20)
	rand.Read(body)
	udpPeer := inetServer(t, r, body)

	// An exit on the internet, which the home exit asks to dial it back.
	helper := startIn(t, r.Inet, "exit", "--state-dir", filepath.Join(dir, "helper"), "--nat", "off",
		"--listen", netip.AddrPortFrom(r.InetAddr, 7844).String(), "--log-format", "json")
	helperAddr := firstLine(t, helper)

	home := startIn(t, r.Home, "exit", "--state-dir", filepath.Join(dir, "home"), "--nat", mode,
		"--listen", "0.0.0.0:7843", "--forward-ports", "40000-40009", "--known-exit", helperAddr,
		"--log-format", "json")
	exitAddr := firstLine(t, home)
	ea, err := link.ParseExitAddr(exitAddr)
	if err != nil {
		t.Fatal(err)
	}
	if want := r.WAN.String() + ":"; !strings.HasPrefix(ea.Addr, want) {
		t.Fatalf("exit printed %s first, want the router's public address %s...", exitAddr, want)
	}
	home.waitLog(t, "reachable from the internet")
	t.Logf("home exit %s reachable", exitAddr)

	status := exitStatusOf(t, filepath.Join(dir, "home"))
	if status.Reach.State != "reachable" || status.NAT == nil || status.NAT.External != r.WAN || !status.Publish ||
		len(status.NAT.Mappings) != 1 || !status.NAT.Mappings[0].Active || status.Addrs[0] != ea.Addr {
		t.Fatalf("exit status %+v\nnat %+v", status, status.NAT)
	}
	// miniupnpd speaks both: auto prefers NAT-PMP, so the two subtests
	// cover both protocols.
	if want := map[string]string{"auto": "natpmp", "upnp": "upnp"}[mode]; status.NAT.Method != want {
		t.Fatalf("method %q with --nat %s, want %s", status.NAT.Method, mode, want)
	}
	out, _, code := run(t, "status", "--state-dir", filepath.Join(dir, "home"))
	if code != 0 || !strings.Contains(out, "reachable at "+ea.Addr) || !strings.Contains(out, "mapping  tcp 7843 -> ") {
		t.Fatalf("status (exit %d):\n%s", code, out)
	}
	t.Logf("swarmvpn status:\n%s", out)

	// A client on the internet links to the public address and downloads.
	app := appIn(t, r)
	client := startIn(t, r.Inet, "connect", "--state-dir", filepath.Join(dir, "client"), "--exit", exitAddr,
		"--socks", "127.0.0.1:0", "--http", "off", "--forward", app.String(), "--log-format", "json")
	socksAddr := client.waitLog(t, "client ready")["socks"].(string)
	fwd := client.waitLog(t, "forwarded port")
	public, err := netip.ParseAddrPort(fwd["public"].(string))
	if err != nil || public.Addr() != r.WAN {
		t.Fatalf("forwarded port %v: want one on %v", fwd, r.WAN)
	}
	var got []byte
	err = nstest.In(r.Inet, func() error {
		c, err := socks.Client{Addr: socksAddr}.Dial(t.Context(), netip.AddrPortFrom(r.InetAddr, 8080).String())
		if err != nil {
			return err
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
		raw, err := io.ReadAll(c)
		_, got, _ = bytes.Cut(raw, []byte("\r\n\r\n"))
		return err
	})
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("download through the exit behind the router: %d bytes, %v", len(got), err)
	}

	// A peer on the internet reaches the client's app through the port.
	if err := nstest.In(r.Inet, func() error { return echoTCP(public) }); err != nil {
		t.Fatalf("tcp to the forwarded port %v: %v", public, err)
	}
	if full {
		if err := udpThroughForward(t, r, socksAddr, udpPeer, public); err != nil {
			t.Fatalf("udp to the forwarded port %v: %v", public, err)
		}
	}
	t.Logf("a client on the internet downloaded %d bytes and a peer reached its app at %v", len(got), public)
	st := exitStatusOf(t, filepath.Join(dir, "home"))
	if len(st.Public.Forwards) != 1 || st.Public.Forwards[0].External != public.Port() || len(st.NAT.Mappings) != 3 {
		t.Fatalf("exit status after the forward: %+v %+v", st.Public, st.NAT.Mappings)
	}
	if st.Stats.Forward.Inbound == 0 || st.Stats.LinksAccepted == 0 {
		t.Fatalf("exit counters %+v", st.Stats)
	}

	// The exit stops: its mappings go.
	client.stop(t)
	if code := home.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if rules := r.NATRules(t); strings.Contains(rules, "dnat") {
		t.Fatalf("mappings left after the exit stopped:\n%s", rules)
	}
	if !full {
		return
	}

	// With --nat off nothing is mapped, and the client cannot link.
	off := startIn(t, r.Home, "exit", "--state-dir", filepath.Join(dir, "home"), "--nat", "off",
		"--listen", "0.0.0.0:7843", "--log-format", "json")
	firstLine(t, off)
	late := startIn(t, r.Inet, "connect", "--state-dir", filepath.Join(dir, "client2"), "--exit", exitAddr,
		"--socks", "127.0.0.1:0", "--http", "off", "--log-format", "json")
	late.waitLog(t, "exit unreachable")
	t.Log("with --nat off the client cannot link")
	if st := exitStatusOf(t, filepath.Join(dir, "home")); st.NAT != nil || st.Stats.LinksAccepted != 0 {
		t.Fatalf("--nat off: status %+v", st)
	}
}

// exitCrashBehindRouter: an exit killed with SIGKILL while it maps its link
// port and a port lent to a client deletes nothing, so the router keeps
// forwarding them; the next start on the same state dir deletes them (it
// recorded them there) before it maps anything, and says so.
func exitCrashBehindRouter(t *testing.T, r *nstest.Router, mode string) {
	dir := t.TempDir()
	home := startIn(t, r.Home, "exit", "--state-dir", filepath.Join(dir, "home"), "--nat", mode,
		"--listen", "0.0.0.0:7843", "--forward-ports", "40000-40009", "--log-format", "json")
	exitAddr := firstLine(t, home)
	app := appIn(t, r)
	client := startIn(t, r.Inet, "connect", "--state-dir", filepath.Join(dir, "client"), "--exit", exitAddr,
		"--socks", "127.0.0.1:0", "--http", "off", "--forward", app.String(), "--log-format", "json")
	fwd := client.waitLog(t, "forwarded port")
	public, err := netip.ParseAddrPort(fwd["public"].(string))
	if err != nil || public.Addr() != r.WAN {
		t.Fatalf("forwarded port %v: want one on %v", fwd, r.WAN)
	}
	to := func(internal int) string { return fmt.Sprintf("dnat ip to %v:%d", r.HomeAddr, internal) }
	st := exitStatusOf(t, filepath.Join(dir, "home"))
	if len(st.Public.Forwards) != 1 {
		t.Fatalf("exit status: %+v", st.Public)
	}
	lent := int(st.Public.Forwards[0].Port)
	rules := r.NATRules(t)
	if !strings.Contains(rules, to(7843)) || strings.Count(rules, to(lent)) != 2 {
		t.Fatalf("mappings of the link port and lent port %d:\n%s", lent, rules)
	}

	// Killed: nothing is deleted, and the router keeps forwarding.
	if err := home.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-home.done
	client.stop(t)
	if rules := r.NATRules(t); !strings.Contains(rules, to(7843)) || strings.Count(rules, to(lent)) != 2 {
		t.Fatalf("after the kill the router holds:\n%s", rules)
	}
	rec, _ := os.ReadFile(filepath.Join(dir, "home", natRecordName))
	t.Logf("killed; the router still forwards 7843 and %d; record:\n%s", lent, rec)

	// The next start, on another port and lending none, deletes them
	// before it maps its own link port.
	again := startIn(t, r.Home, "exit", "--state-dir", filepath.Join(dir, "home"), "--nat", mode,
		"--listen", "0.0.0.0:7853", "--log-format", "json")
	again.waitLog(t, "nat: deleted a mapping an earlier run left")
	firstLine(t, again)
	rules = r.NATRules(t)
	if strings.Contains(rules, to(7843)) || strings.Contains(rules, to(lent)) || !strings.Contains(rules, to(7853)) {
		t.Fatalf("after the restart the router holds:\n%s", rules)
	}
	if n := strings.Count(again.output(), "deleted a mapping an earlier run left"); n != 3 {
		t.Fatalf("%d deletions logged, want 3:\n%s", n, again.output())
	}
	t.Logf("the next start deleted the mappings of 7843 and %d", lent)
	if code := again.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if rules := r.NATRules(t); strings.Contains(rules, "dnat") {
		t.Fatalf("mappings left after a clean stop:\n%s", rules)
	}
	if _, err := os.Stat(filepath.Join(dir, "home", natRecordName)); !os.IsNotExist(err) {
		t.Fatalf("record after a clean stop: %v", err)
	}
}

// doubleNAT: a router whose own address is a carrier-grade NAT one maps
// nothing; the exit says so at start and in its status.
func doubleNAT(t *testing.T, r *nstest.Router) {
	dir := t.TempDir()
	home := startIn(t, r.Home, "exit", "--state-dir", dir, "--nat", "auto", "--listen", "0.0.0.0:7843", "--log-format", "json")
	firstLine(t, home)
	home.waitLog(t, "NOT reachable from the internet: clients outside this network cannot link to this exit, and it will not publish itself")
	st := exitStatusOf(t, dir)
	if st.Publish || st.NAT == nil || !st.NAT.DoubleNAT || !strings.Contains(st.NAT.Err, "ask the ISP for a public IPv4 address") {
		t.Fatalf("status %+v\nnat %+v", st, st.NAT)
	}
	out, _, _ := run(t, "status", "--exit", "--state-dir", dir)
	t.Logf("swarmvpn status --exit:\n%s", out)
	if !strings.Contains(out, "DOUBLE NAT") || !strings.Contains(out, "not reachable") {
		t.Fatalf("status:\n%s", out)
	}
}

func firstLine(t *testing.T, p *proc) string {
	t.Helper()
	select {
	case l := <-p.stdout:
		return strings.TrimSpace(l)
	case <-time.After(20 * time.Second):
		t.Fatalf("no address printed:\n%s", p.output())
	}
	return ""
}

func exitStatusOf(t *testing.T, dir string) exitStatus {
	t.Helper()
	out, errOut, code := run(t, "status", "--exit", "--json", "--state-dir", dir)
	var s exitStatus
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s.Role != "exit" {
		t.Fatalf("status --exit: exit %d, %q %q", code, out, errOut)
	}
	return s
}

// appIn runs the client's local app in the internet namespace: TCP echo
// on loopback.
func appIn(t *testing.T, r *nstest.Router) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	if err := nstest.In(r.Inet, func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func echoTCP(dst netip.AddrPort) error {
	c, err := net.DialTimeout("tcp4", dst.String(), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "hello from a peer")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if string(got) != "hello from a peer" {
		return fmt.Errorf("echo %q, %v", got, err)
	}
	return nil
}

// udpThroughForward: the app opens a UDP association through the client
// and sends to the peer; the peer answers at the forwarded port, and the
// app gets it.
func udpThroughForward(t *testing.T, r *nstest.Router, socksAddr string, peer *net.UDPConn, public netip.AddrPort) error {
	var a *socks.Association
	if err := nstest.In(r.Inet, func() (err error) {
		a, err = socks.Client{Addr: socksAddr}.Associate(t.Context())
		return
	}); err != nil {
		return err
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	peerAddr := peer.LocalAddr().String()
	buf := make([]byte, 2048)
	// The app speaks first, as a torrent client does; the exit binds its
	// association on the forwarded port.
	for try := 0; ctx.Err() == nil; try++ {
		if err := a.Send(peerAddr, []byte("hello "+strconv.Itoa(try))); err != nil {
			return err
		}
		peer.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := peer.ReadFromUDPAddrPort(buf); err == nil {
			break
		}
	}
	// The peer answers at the exit's public address and forwarded port,
	// not to where the datagram came from.
	for ctx.Err() == nil {
		if _, err := peer.WriteToUDPAddrPort([]byte("to the forwarded port"), public); err != nil {
			return err
		}
		a.Conn.SetReadDeadline(time.Now().Add(time.Second))
		payload, _, err := a.Receive(buf)
		if err == nil && string(payload) == "to the forwarded port" {
			return nil
		}
	}
	return fmt.Errorf("no datagram through the forwarded port: %w", ctx.Err())
}
