package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/nstest"
	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

// needTools skips the test when a tool is missing, or fails it when CI is
// set: CI must install them (.ci/run).
func needTools(t *testing.T, pkg string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (Debian package %s)", tool, pkg)
			}
			t.Skipf("needs %s (Debian package %s)", tool, pkg)
		}
	}
}

// TestCaptureLooksLikeHTTPS captures a client–exit link on port 443
// carrying a download, in a network namespace of its own, and has nDPI and
// tshark judge it: nDPI sees TLS with no flow risk, the ClientHello has an
// SNI and only a browser's ALPN values, and the name swarmvpn appears
// nowhere in the capture.
func TestCaptureLooksLikeHTTPS(t *testing.T) {
	needTools(t, "tcpdump", "tcpdump")
	needTools(t, "libndpi-bin", "ndpiReader")
	needTools(t, "tshark", "tshark")
	if !nstest.Isolated(t, "link set lo up") {
		return
	}
	dir := t.TempDir()
	exitKey := filepath.Join(dir, "exit.key")
	out, _, _ := run(t, "keygen", "--key", exitKey)
	exitID := strings.TrimSpace(out)
	exit := start(t, "exit", "--key", exitKey, "--listen", "127.0.0.1:443", "--allow-private", "--log-format", "json")
	exit.waitLog(t, "exit ready")

	pcap := filepath.Join(dir, "link.pcap")
	dump := exec.Command("tcpdump", "-i", "lo", "-U", "-n", "-w", pcap, "tcp", "port", "443")
	stderr, _ := dump.StderrPipe()
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dump.Process.Kill(); dump.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "listening on") {
	}
	go io.Copy(io.Discard, stderr)

	body := make([]byte, 8<<20)
	rand.Read(body)
	tg := testnet.StartTarget(t, "127.0.0.1:0", func(c net.Conn) {
		io.CopyN(io.Discard, c, 1)
		c.Write(body)
	})
	clientProc := start(t, "connect", "--state-dir", filepath.Join(dir, "client"), "--exit", exitID+"@127.0.0.1:443",
		"--socks", "127.0.0.1:0", "--http", "off", "--log-format", "json")
	socksAddr := clientProc.waitLog(t, "client ready")["socks"].(string)
	c, _, err := testnet.SOCKS5Dial(t.Context(), socksAddr, "127.0.0.1:"+tg.Port())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{1})
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("download through the link: %d bytes, %v; want %d identical", len(got), err, len(body))
	}
	clientProc.stop(t)
	dump.Process.Signal(syscall.SIGINT)
	dump.Wait()

	capture, err := os.ReadFile(pcap)
	// Under load the kernel may drop a few of the capture's copies; most
	// of the download must be there.
	if err != nil || len(capture) < len(body)/2 {
		t.Fatalf("capture of %d bytes (%v), want about the download's %d", len(capture), err, len(body))
	}
	if bytes.Contains(bytes.ToLower(capture), []byte("swarmvpn")) {
		t.Fatal("the capture contains the bytes swarmvpn")
	}

	ndpi, err := exec.Command("ndpiReader", "-i", pcap, "-v", "2").CombinedOutput()
	if err != nil {
		t.Fatalf("ndpiReader: %v\n%s", err, ndpi)
	}
	var flows []string
	for l := range strings.SplitSeq(string(ndpi), "\n") {
		if strings.Contains(l, "TCP 127.0.0.1:") && strings.Contains(l, "127.0.0.1:443") {
			flows = append(flows, l)
		}
	}
	if len(flows) != 1 {
		t.Fatalf("nDPI found %d flows to port 443, want 1:\n%s", len(flows), ndpi)
	}
	if !strings.Contains(flows[0], "/TLS]") || strings.Contains(flows[0], "[Risk:") || !strings.Contains(flows[0], "[ALPN: h2;http/1.1]") {
		t.Fatalf("nDPI: %s\nwant TLS, the browser ALPN, and no risk", flows[0])
	}

	hello, err := exec.Command("tshark", "-r", pcap, "-Y", "tls.handshake.type == 1", "-T", "fields",
		"-e", "tls.handshake.extensions_server_name", "-e", "tls.handshake.extensions_alpn_str").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(hello)), "\n")
	if len(lines) != 1 {
		t.Fatalf("tshark found %d ClientHellos, want 1: %q", len(lines), hello)
	}
	sni, alpn, _ := strings.Cut(lines[0], "\t")
	if !strings.Contains(sni, ".") {
		t.Fatalf("ClientHello SNI %q, want a host name", sni)
	}
	for a := range strings.SplitSeq(alpn, ",") {
		if a != "h2" && a != "http/1.1" {
			t.Fatalf("ClientHello ALPN %q, want only h2 and http/1.1", alpn)
		}
	}
	t.Logf("nDPI: %s", flows[0])
}

// TestProberSeesWebSite: curl over HTTP/1.1 and HTTP/2 and openssl
// s_client find an ordinary HTTPS site at the exit, which asks for no
// client certificate; the exit counts each of them.
func TestProberSeesWebSite(t *testing.T) {
	needTools(t, "curl", "curl")
	needTools(t, "openssl", "openssl")
	dir := t.TempDir()
	exit := start(t, "exit", "--state-dir", filepath.Join(dir, "exit"), "--listen", "127.0.0.1:0",
		"--metrics", "127.0.0.1:0", "--log-format", "json")
	metrics := exit.waitLog(t, "serving metrics")["url"].(string)
	addr := exit.waitLog(t, "exit ready")["listen"].(string)

	for _, proto := range []struct{ flag, want string }{{"--http1.1", "1.1 200"}, {"--http2", "2 200"}} {
		out, err := exec.CommandContext(t.Context(), "curl", "-k", "-s", "--max-time", "20", proto.flag,
			"-w", "\n%{http_version} %{http_code}", "https://"+addr+"/").Output()
		if err != nil || !strings.HasSuffix(string(out), proto.want) || !strings.Contains(string(out), "<title>") {
			t.Fatalf("curl %s: %v\n%s", proto.flag, err, out)
		}
	}

	s := exec.CommandContext(t.Context(), "openssl", "s_client", "-connect", addr, "-servername", "www.example.com", "-ign_eof")
	s.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n")
	out, err := s.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("HTTP/1.1 200 OK")) {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	for _, tell := range []string{"Acceptable client certificate CA names", "Client Certificate Types", "Requested Signature Algorithms"} {
		if bytes.Contains(out, []byte(tell)) {
			t.Fatalf("the exit asked for a client certificate (%q):\n%s", tell, out)
		}
	}
	if bytes.Contains(bytes.ToLower(out), []byte("swarmvpn")) {
		t.Fatalf("openssl s_client saw the name swarmvpn:\n%s", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for scrape(t, metrics)["swarmvpn_exit_fallback_total"] < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("swarmvpn_exit_fallback_total = %v, want 3", scrape(t, metrics)["swarmvpn_exit_fallback_total"])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
