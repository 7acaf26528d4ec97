package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/internal/nstest"
	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

// hopsNet is a small internet in network namespaces: a router namespace
// joins one /24 per host, each in its own /16 (10.N.0.0/24, host .2,
// router .1). The router lets the client reach the relays only, and counts
// what it drops.
type hopsNet struct {
	router string
	hosts  map[string]string // role → namespace
	ips    map[string]string // role → address
}

// twoHopRoles are the hosts of the two-hop test, by subnet number.
var twoHopRoles = []struct {
	role string
	net  int
}{{"client", 1}, {"relay1", 2}, {"exit", 3}, {"inet", 4}, {"relay2", 5}}

func newHopsNet(t *testing.T) *hopsNet {
	t.Helper()
	tag := strconv.Itoa(os.Getpid() % 100000)
	hn := &hopsNet{router: "svhr" + tag, hosts: map[string]string{}, ips: map[string]string{}}
	add := func(ns string) {
		nstest.Run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		nstest.Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	add(hn.router)
	nstest.Run(t, "ip", "netns", "exec", hn.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	for _, h := range twoHopRoles {
		ns := fmt.Sprintf("svh%d%s", h.net, tag)
		add(ns)
		hn.hosts[h.role], hn.ips[h.role] = ns, fmt.Sprintf("10.%d.0.2", h.net)
		in, out := fmt.Sprintf("h%d%s", h.net, tag), fmt.Sprintf("r%d%s", h.net, tag)
		for _, c := range [][]string{
			{"link", "add", in, "netns", ns, "type", "veth", "peer", "name", out, "netns", hn.router},
			{"-n", ns, "addr", "add", hn.ips[h.role] + "/24", "dev", in},
			{"-n", ns, "link", "set", in, "up"},
			{"-n", ns, "route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", h.net)},
			{"-n", hn.router, "addr", "add", fmt.Sprintf("10.%d.0.1/24", h.net), "dev", out},
			{"-n", hn.router, "link", "set", out, "up"},
		} {
			nstest.Run(t, append([]string{"ip"}, c...)...)
		}
	}
	rules := `table inet hops {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip saddr 10.1.0.0/24 ip daddr != { 10.2.0.0/24, 10.5.0.0/24 } counter drop
    ip daddr 10.1.0.0/24 ip saddr != { 10.2.0.0/24, 10.5.0.0/24 } counter drop
  }
}
`
	file := filepath.Join(t.TempDir(), "hops.nft")
	os.WriteFile(file, []byte(rules), 0o600)
	nstest.Run(t, "ip", "netns", "exec", hn.router, "nft", "-f", file)
	return hn
}

// leaked counts the packets the router dropped between the client and
// anything but a relay.
func (hn *hopsNet) leaked(t *testing.T) int {
	t.Helper()
	out := nstest.Run(t, "ip", "netns", "exec", hn.router, "nft", "list", "chain", "inet", "hops", "forward")
	n := 0
	for _, m := range regexp.MustCompile(`packets (\d+)`).FindAllStringSubmatch(out, -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// TestBinaryTwoHops runs a client, two relays, an exit and a server on
// "the internet", each in a network namespace of its own, and checks what
// each one sees: the download is intact; the server sees only the exit;
// the exit sees (and logs) only the relay's address, and a client key
// derived for it; the relay's capture, logs and metrics name no
// destination. Then the relay in use is killed mid-download: the client
// comes back through the other relay to the same exit with the same
// forwarded port, and at no point did the client send anything elsewhere
// than to a relay.
func TestBinaryTwoHops(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the two-hop namespace test needs root")
		}
		t.Skip("the two-hop namespace test needs root")
	}
	needTools(t, "iproute2", "ip")
	needTools(t, "nftables", "nft")
	hn := newHopsNet(t)
	dir := t.TempDir()
	const name = "target.swarmvpn-test"
	// The exit resolves the destination's name from its own hosts file
	// (ip netns exec mounts /etc/netns/NS/hosts over /etc/hosts).
	etc := filepath.Join("/etc/netns", hn.hosts["exit"])
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	os.WriteFile(filepath.Join(etc, "hosts"), []byte(hn.ips["inet"]+" "+name+"\n"), 0o644)

	// The server on the internet: it sends body to whoever connects, and
	// notes their address.
	body := make([]byte, 24<<20)
	rand.Read(body)
	var seenMu sync.Mutex
	var seen []string
	var srv net.Listener
	if err := nstest.In(hn.hosts["inet"], func() (err error) { srv, err = net.Listen("tcp4", hn.ips["inet"]+":8000"); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			seenMu.Lock()
			seen = append(seen, c.RemoteAddr().(*net.TCPAddr).IP.String())
			seenMu.Unlock()
			go func() { defer c.Close(); c.Write(body) }()
		}
	}()

	ids := map[string]string{}
	procs := map[string]*proc{}
	for _, role := range []string{"exit", "relay1", "relay2"} {
		key := filepath.Join(dir, role+".key")
		out, _, _ := run(t, "keygen", "--key", key)
		ids[role] = strings.TrimSpace(out)
		args := []string{"exit", "--key", key, "--state-dir", filepath.Join(dir, role), "--listen", hn.ips[role] + ":443",
			"--allow-private", "--log-level", "debug", "--log-format", "json", "--mdns=false"}
		if role == "exit" {
			// Slow enough that the relay dies mid-download.
			args = append(args, "--forward-ports", "41000-41015", "--rate-per-client", "16M")
		} else {
			args = append(args, "--metrics", "127.0.0.1:9100")
		}
		procs[role] = startIn(t, hn.hosts[role], args...)
		procs[role].waitLog(t, "exit ready")
	}
	addr := func(role string) string { return ids[role] + "@" + hn.ips[role] + ":443" }

	// The client's forward target, and its SOCKS5 port, in its namespace.
	var fwdLn net.Listener
	if err := nstest.In(hn.hosts["client"], func() (err error) { fwdLn, err = net.Listen("tcp4", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwdLn.Close() })
	inbound := make(chan string, 4)
	go func() {
		for {
			c, err := fwdLn.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(c)
			c.Close()
			inbound <- string(b)
		}
	}()
	clientDir := filepath.Join(dir, "client")
	cl := startIn(t, hn.hosts["client"], "connect", "--hops", "2", "--exit", addr("exit"),
		"--relay", addr("relay1"), "--relay", addr("relay2"), "--state-dir", clientDir,
		"--socks", "127.0.0.1:0", "--http", "off", "--forward", fwdLn.Addr().String(), "--mdns=false",
		"--log-level", "debug", "--log-format", "json")
	socks := cl.waitLog(t, "client ready")["socks"].(string)
	status := func() client.Report {
		t.Helper()
		out, errOut, code := run(t, "status", "--json", "--state-dir", clientDir)
		var r client.Report
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
			t.Fatalf("status: exit %d %s %s", code, out, errOut)
		}
		return r
	}
	var r client.Report
	testnet.WaitFor(t, "the two-hop path and its forwarded port", func() bool {
		r = status()
		return r.Link == "up" && r.ForwardedPort != 0 && r.Relay != ""
	})
	if !strings.HasPrefix(r.Exit, ids["exit"]) || r.RTT == "" || r.RelayRTT == "" || r.Hops != 2 {
		t.Fatalf("status %+v: want the exit, a relay and both round trips", r)
	}
	used, spare := "relay1", "relay2"
	if strings.HasPrefix(r.Relay, ids["relay2"]) {
		used, spare = spare, used
	}
	port := r.ForwardedPort
	if out, _, _ := run(t, "status", "--state-dir", clientDir); !strings.Contains(out, "relay") || !strings.Contains(out, "through both hops") {
		t.Fatalf("status shows no relay hop:\n%s", out)
	}

	// A capture on the relay's only interface: both of its links.
	pcap := filepath.Join(dir, "relay.pcap")
	if _, err := exec.LookPath("tcpdump"); err == nil {
		dump := exec.Command("ip", "netns", "exec", hn.hosts[used], "tcpdump", "-i", "any", "-U", "-n", "-w", pcap, "tcp")
		stderr, _ := dump.StderrPipe()
		if err := dump.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dump.Process.Kill(); dump.Wait() })
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && !strings.Contains(sc.Text(), "listening on") {
		}
		go io.Copy(io.Discard, stderr)
	} else if os.Getenv("CI") != "" {
		t.Fatal("tcpdump is not installed (Debian package tcpdump)")
	} else {
		t.Log("tcpdump not installed: the relay's links are not captured")
		pcap = ""
	}

	dial := func() net.Conn {
		t.Helper()
		var c net.Conn
		err := nstest.In(hn.hosts["client"], func() (err error) {
			c, _, err = testnet.SOCKS5Dial(t.Context(), socks, name+":8000")
			return
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || sha256.Sum256(got) != sha256.Sum256(body) {
		t.Fatalf("downloaded %d bytes (%v), want %d identical", len(got), err, len(body))
	}
	// A peer on the internet reaches the forwarded port.
	peerSend(t, hn.hosts["inet"], hn.ips["exit"], port, "hello through two hops", inbound)

	seenMu.Lock()
	if len(seen) != 1 || seen[0] != hn.ips["exit"] {
		t.Fatalf("the server saw %v, want only the exit %s", seen, hn.ips["exit"])
	}
	seenMu.Unlock()
	// The exit saw the relay, never the client, and a key that is not the
	// client's own.
	exitLog := procs["exit"].output()
	if strings.Contains(exitLog, hn.ips["client"]) || !strings.Contains(exitLog, hn.ips[used]) {
		t.Fatalf("the exit's log names the client's address, or not the relay's:\n%s", exitLog)
	}
	own, _, _ := run(t, "id", "--state-dir", clientDir)
	derived, _, _ := run(t, "id", "--state-dir", clientDir, "--for-exit", ids["exit"])
	if own == derived || strings.Contains(exitLog, strings.TrimSpace(own)[:8]) || !strings.Contains(exitLog, strings.TrimSpace(derived)[:8]) {
		t.Fatalf("the exit should know the client as %s (derived), never as %s:\n%s", derived, own, exitLog)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "exit", "forward-leases.json")); err == nil && bytes.Contains(b, []byte(hn.ips["client"])) {
		t.Fatalf("the exit's lease file names the client's address:\n%s", b)
	}
	// The relay names no destination, anywhere.
	secrets := []string{name, hn.ips["inet"], ":8000"}
	relayLog := procs[used].output()
	var mc net.Conn
	if err := nstest.In(hn.hosts[used], func() (err error) { mc, err = net.Dial("tcp4", "127.0.0.1:9100"); return }); err != nil {
		t.Fatal(err)
	}
	io.WriteString(mc, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
	metrics, _ := io.ReadAll(mc)
	mc.Close()
	if !bytes.Contains(metrics, []byte("swarmvpn_exit_relayed_total 1")) {
		t.Fatalf("relay metrics do not count the relayed link:\n%s", metrics)
	}
	for _, s := range secrets {
		if strings.Contains(relayLog, s) || bytes.Contains(metrics, []byte(s)) {
			t.Fatalf("the relay's log or metrics name the destination (%q):\n%s\n%s", s, relayLog, metrics)
		}
	}
	if pcap != "" {
		testnet.WaitFor(t, "the capture to hold the download", func() bool {
			fi, err := os.Stat(pcap)
			return err == nil && fi.Size() > int64(len(body))
		})
		capture, _ := os.ReadFile(pcap)
		binDst := append(net.ParseIP(hn.ips["inet"]).To4(), 0x1f, 0x40) // 10.4.0.2:8000 as SOCKS and the stream header write it
		for _, s := range append(secrets[:2], string(binDst)) {
			if bytes.Contains(capture, []byte(s)) {
				t.Fatalf("the relay's capture holds %q in clear", s)
			}
		}
	}

	// The relay in use dies mid-download.
	c = dial()
	if _, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	procs[used].cmd.Process.Kill()
	io.Copy(io.Discard, c) // cut short
	c.Close()
	testnet.WaitFor(t, "the path to come back through the other relay", func() bool {
		r = status()
		return r.Link == "up" && strings.HasPrefix(r.Relay, ids[spare])
	})
	if !strings.HasPrefix(r.Exit, ids["exit"]) || r.ForwardedPort != port {
		t.Fatalf("after the relay died: exit %s port %d; want the same exit and port %d", r.Exit, r.ForwardedPort, port)
	}
	c = dial()
	got, err = io.ReadAll(c)
	c.Close()
	if err != nil || sha256.Sum256(got) != sha256.Sum256(body) {
		t.Fatalf("after failover: downloaded %d bytes (%v), want %d identical", len(got), err, len(body))
	}
	peerSend(t, hn.hosts["inet"], hn.ips["exit"], port, "hello again", inbound)
	if n := hn.leaked(t); n != 0 {
		t.Fatalf("the client sent or received %d packets to or from something other than a relay", n)
	}
}

// peerSend connects from the internet to the exit's forwarded port and
// checks that msg reaches the client's forward target.
func peerSend(t *testing.T, ns, exitIP string, port uint16, msg string, inbound <-chan string) {
	t.Helper()
	err := nstest.In(ns, func() error {
		c, err := net.Dial("tcp4", net.JoinHostPort(exitIP, strconv.Itoa(int(port))))
		if err != nil {
			return err
		}
		io.WriteString(c, msg)
		return c.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-inbound:
		if got != msg {
			t.Fatalf("forwarded connection delivered %q, want %q", got, msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived through the forwarded port")
	}
}
