package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

// The browser tests load the status pages and a bench report in Debian's
// headless chromium, driven by playwright-core (testdata/browser, installed
// there with npm on first use), and read what the page shows. Without
// chromium, node or npm they skip, unless CI is set: then they fail.

// browserDir holds the script that drives chromium, and its node_modules.
const browserDir = "testdata/browser"

// browser returns a function that loads a page as spec says (see
// testdata/browser/page.mjs) and returns the texts it read.
func browser(t *testing.T) func(spec map[string]any) map[string]string {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and "+format, args...)
		}
		t.Skipf(format+" (install Debian's chromium and nodejs packages; CI must)", args...)
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		unavailable("no chromium at %s for the browser tests", chromium)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable("no node for the browser tests")
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core", "package.json")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			unavailable("no npm to install playwright-core into %s", browserDir)
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = browserDir
		if out, err := cmd.CombinedOutput(); err != nil {
			unavailable("npm ci in %s failed (%v): %s", browserDir, err, out)
		}
	}
	return func(spec map[string]any) map[string]string {
		t.Helper()
		b, _ := json.Marshal(spec)
		cmd := exec.Command(node, "page.mjs", string(b))
		cmd.Dir = browserDir
		cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var got struct{ Texts map[string]string }
		if err != nil || json.Unmarshal(stdout.Bytes(), &got) != nil {
			t.Fatalf("chromium on %s: %v: %s%s", spec["url"], err, stderr.String(), stdout.String())
		}
		if shot, _ := spec["shot"].(string); shot != "" {
			t.Logf("screenshot of %s: %s", spec["url"], shot)
		}
		return got.Texts
	}
}

// artifacts is where the browser tests leave their screenshots:
// $SWARMVPN_ARTIFACTS, or swarmvpn-artifacts in the temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SWARMVPN_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "swarmvpn-artifacts")
	}
	dir, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// pageURL waits for p's log line saying where its status page is.
func pageURL(t *testing.T, p *proc) string {
	t.Helper()
	url, _ := p.waitLog(t, "serving the status page")["url"].(string)
	if url == "" {
		t.Fatalf("no status page URL in the log:\n%s", p.output())
	}
	return url
}

// streamTarget starts a target that sends to and takes from each flow as
// fast as it goes, for 90 seconds at most.
func streamTarget(t *testing.T) *testnet.Target {
	return testnet.StartTarget(t, "127.0.0.1:0", func(c net.Conn) {
		c.SetDeadline(time.Now().Add(90 * time.Second))
		go io.Copy(io.Discard, c)
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}

// TestBrowserStatusPages: an exit and a client run as processes with their
// status pages on, a flow carries data both ways, and chromium shows the
// client's relay and exit (it runs on two hops), its rates and its
// forwarded port, and the exit's client, rates and port; then a bench
// --html report.
func TestBrowserStatusPages(t *testing.T) {
	load := browser(t)
	out := artifacts(t)
	dir := t.TempDir()

	lo := 42000 + rand.N(15000)
	exitProc := start(t, "exit", "--state-dir", filepath.Join(dir, "exit"), "--listen", "127.0.0.1:0", "--allow-private",
		"--forward-ports", strconv.Itoa(lo)+"-"+strconv.Itoa(lo+31), "--rate-per-client", "4M",
		"--ui", "127.0.0.1:0", "--log-format", "json")
	var exitAddr string
	select {
	case exitAddr = <-exitProc.stdout:
	case <-time.After(15 * time.Second):
		t.Fatalf("exit printed no address:\n%s", exitProc.output())
	}
	exitID, _, _ := strings.Cut(exitAddr, "@")
	exitPage := pageURL(t, exitProc)
	// The client reaches the exit through a relay: the page shows both hops.
	relayProc := start(t, "exit", "--state-dir", filepath.Join(dir, "relay"), "--listen", "127.0.0.1:0", "--allow-private",
		"--log-format", "json")
	var relayAddr string
	select {
	case relayAddr = <-relayProc.stdout:
	case <-time.After(15 * time.Second):
		t.Fatalf("relay printed no address:\n%s", relayProc.output())
	}
	relayID, relayHost, _ := strings.Cut(relayAddr, "@")

	clientProc := start(t, "connect", "--state-dir", filepath.Join(dir, "client"), "--exit", exitAddr,
		"--hops", "2", "--relay", relayAddr,
		"--socks", "127.0.0.1:0", "--http", "off", "--ui", "127.0.0.1:0", "--log-format", "json")
	clientPage := pageURL(t, clientProc)
	socksAddr, _ := clientProc.waitLog(t, "client ready")["socks"].(string)
	clientProc.waitLog(t, "forwarded port")

	// One flow, data both ways, while the pages are looked at.
	tg := streamTarget(t)
	c, _, err := testnet.SOCKS5Dial(t.Context(), socksAddr, tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(90 * time.Second))
	go io.Copy(io.Discard, c)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()

	nonZero := `^[1-9][0-9.]* (B|[KMG]iB)/s$`
	texts := load(map[string]any{"url": clientPage, "shot": filepath.Join(out, "client.png"), "width": 1280, "height": 900,
		"wait": map[string]string{
			"#link-state":     "^up$",
			"#exit-id":        "^" + regexp.QuoteMeta(exitID[:8]),
			"#rate-down":      nonZero,
			"#rate-up":        nonZero,
			"#forwarded-port": `^[0-9]+$`,
			"#relay-id":       "^" + regexp.QuoteMeta(relayID[:8]),
			"#relay-addr":     "^" + regexp.QuoteMeta(relayHost) + "$",
			"#relay-rtt":      `^[0-9.]+(µs|ms|s)$`,
			"#exit-rtt-label": "both hops",
		},
		"read": []string{"#flows-open", "#events"}})
	port, _ := strconv.Atoi(texts["#forwarded-port"])
	if port < lo || port > lo+31 {
		t.Errorf("the page shows forwarded port %d, outside %d-%d", port, lo, lo+31)
	}
	if !strings.Contains(texts["#events"], "link up") || !strings.Contains(texts["#events"], "forwarded port") {
		t.Errorf("recent events %q: want the link coming up and the port", texts["#events"])
	}

	// /api/status is what 'status --json' prints (read a moment apart:
	// the counters and ages move).
	printed, errOut, code := run(t, "status", "--state-dir", filepath.Join(dir, "client"), "--json")
	if code != 0 {
		t.Fatalf("status --json: %d %s", code, errOut)
	}
	resp, err := http.Get(clientPage + "api/status")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if a, b := steady(t, []byte(printed)), steady(t, served); a != b {
		t.Errorf("/api/status\n%s\ndiffers from 'status --json'\n%s", b, a)
	}
	if !strings.Contains(string(served), `"forwarded_port":`+strconv.Itoa(port)) {
		t.Errorf("/api/status %s does not say port %d", served, port)
	}

	texts = load(map[string]any{"url": exitPage, "shot": filepath.Join(out, "exit.png"), "width": 1280, "height": 900,
		"wait": map[string]string{
			"#clients":   "^1$",
			"#rate-down": nonZero,
			"#rate-up":   nonZero,
			"#forwards":  "^1$",
			"#ports":     "^ports " + strconv.Itoa(port) + " ",
		},
		"read": []string{"#peer", "#refused"}})
	if texts["#peer"] != exitID {
		t.Errorf("exit page shows peer %q, want %q", texts["#peer"], exitID)
	}

	// A bench report, in seconds: one workload, rough figures.
	report := filepath.Join(out, "bench.html")
	if _, errOut, code := run(t, "bench", "--quick", "--direct", "--workloads", "latency", "--html", report); code != 0 {
		t.Fatalf("bench --html: exit %d: %s", code, errOut)
	}
	texts = load(map[string]any{"url": "file://" + report, "shot": filepath.Join(out, "bench.png"), "width": 1280, "height": 900,
		"wait": map[string]string{
			"#machine-line": `cores`,
			"#command":      `^swarmvpn bench --quick`,
			".fig .ratio":   `^[0-9.]+×$`,
		},
		"read": []string{"#table"}})
	if !strings.Contains(texts["#table"], "direct") || !strings.Contains(texts["#table"], "swarmvpn") {
		t.Errorf("report table %q: want both paths", texts["#table"])
	}
}

// steady returns a client report's JSON without what moves from one
// moment to the next: counters, round trips and ages.
func steady(t *testing.T, raw []byte) string {
	t.Helper()
	var r client.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("not a client report (%v): %s", err, raw)
	}
	r.Traffic, r.RTT, r.RelayRTT = nil, "", ""
	for i := range r.Exits {
		r.Exits[i].Age, r.Exits[i].RTT, r.Exits[i].Load = "", "", 0
	}
	b, _ := json.Marshal(r)
	return string(b)
}
