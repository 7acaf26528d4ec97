package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

// scrape fetches url and returns each sample's value by its name and
// labels as the text format writes them: `name{label="value"}`.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("scrape %s: line %q", url, line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: line %q: %v", url, line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return out
}

// expect compares samples with want, reporting every difference.
func expect(t *testing.T, role string, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: no sample %s", role, k)
		case g != v:
			t.Errorf("%s: %s = %v, want %v", role, k, g, v)
		}
	}
}

// matches reports whether every sample in want has its value in got.
func matches(got, want map[string]float64) bool {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

// TestBinaryMetrics runs an exit and a client as processes with
// --metrics, carries a known number of TCP flows, bytes and datagrams, and
// compares both processes' metrics and the client's status with them.
func TestBinaryMetrics(t *testing.T) {
	dir := t.TempDir()
	exit := start(t, "exit", "--state-dir", filepath.Join(dir, "exit"), "--listen", "127.0.0.1:0", "--allow-private",
		"--metrics", "127.0.0.1:0", "--log-format", "json")
	exitMetrics := exit.waitLog(t, "serving metrics")["url"].(string)
	var exitAddr string
	select {
	case exitAddr = <-exit.stdout:
	case <-time.After(15 * time.Second):
		t.Fatalf("exit printed no address")
	}
	stateDir := filepath.Join(dir, "client")
	clientProc := start(t, "connect", "--state-dir", stateDir, "--exit", exitAddr, "--socks", "127.0.0.1:0", "--http", "off",
		"--metrics", "127.0.0.1:0", "--log-format", "json")
	clientMetrics := clientProc.waitLog(t, "serving metrics")["url"].(string)
	socksAddr := clientProc.waitLog(t, "client ready")["socks"].(string)
	clientProc.waitLog(t, "link up")

	// TCP: flows that send up, half-close, and read the reply to the end.
	const flows, up, down = 3, 150 << 10, 70 << 10
	reply := make([]byte, down)
	rand.Read(reply)
	tg := testnet.StartTarget(t, "127.0.0.1:0", func(c net.Conn) {
		io.Copy(io.Discard, c)
		c.Write(reply)
	})
	payload := make([]byte, up)
	rand.Read(payload)
	for range flows {
		c, _, err := testnet.SOCKS5Dial(t.Context(), socksAddr, "127.0.0.1:"+tg.Port())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || len(got) != down {
			t.Fatalf("reply: %d bytes (%v), want %d", len(got), err, down)
		}
	}
	// One flow the exit's policy refuses: SMTP.
	if _, _, err := testnet.SOCKS5Dial(t.Context(), socksAddr, "127.0.0.1:25"); testnet.ReplyCode(err) != 2 {
		t.Fatalf("connect to port 25: %v, want reply 2 (not allowed)", err)
	}
	// And one to the exit's own metrics listener, which --allow-private
	// does not open.
	metricsHost := strings.TrimSuffix(strings.TrimPrefix(exitMetrics, "http://"), "/metrics")
	if _, _, err := testnet.SOCKS5Dial(t.Context(), socksAddr, metricsHost); testnet.ReplyCode(err) != 2 {
		t.Fatalf("connect to the exit's own metrics at %s: %v, want reply 2 (not allowed)", metricsHost, err)
	}

	// UDP: datagrams to an echo through one association, then one the
	// client's relay must drop (a fragment).
	echo, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			echo.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	u, err := testnet.SOCKS5Associate(t.Context(), socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	const datagrams, dsize = 5, 600
	for i := range datagrams {
		msg := []byte(fmt.Sprintf("%0*d", dsize, i))
		if err := u.Send(echo.LocalAddr().String(), msg); err != nil {
			t.Fatal(err)
		}
		got, _, err := u.Receive(10 * time.Second)
		if err != nil || string(got) != string(msg) {
			t.Fatalf("datagram %d: echo %q (%v)", i, got, err)
		}
	}
	frag := append([]byte{0, 0, 1, 1, 127, 0, 0, 1, 0, 9}, "a fragment"...)
	if _, err := u.Conn.WriteToUDPAddrPort(frag, u.Relay); err != nil {
		t.Fatal(err)
	}

	tcpIn, tcpOut := float64(flows*down), float64(flows*up)
	udpBytes := float64(datagrams * dsize)
	wantClient := map[string]float64{
		`swarmvpn_client_link_up`:                           1,
		`swarmvpn_client_links_open`:                        1,
		`swarmvpn_client_failovers_total`:                   0,
		`swarmvpn_client_forwarded_port`:                    0,
		`swarmvpn_flows_open`:                               1, // the association
		`swarmvpn_flows_total{kind="connect"}`:              flows,
		`swarmvpn_flows_total{kind="udp"}`:                  1,
		`swarmvpn_flows_total{kind="inbound"}`:              0,
		`swarmvpn_flow_bytes_total{direction="in"}`:         tcpIn,
		`swarmvpn_flow_bytes_total{direction="out"}`:        tcpOut,
		`swarmvpn_udp_datagrams_total{direction="in"}`:      datagrams,
		`swarmvpn_udp_datagrams_total{direction="out"}`:     datagrams,
		`swarmvpn_udp_bytes_total{direction="in"}`:          udpBytes,
		`swarmvpn_udp_bytes_total{direction="out"}`:         udpBytes,
		`swarmvpn_udp_drops_total{reason="fragment"}`:       1,
		`swarmvpn_udp_drops_total{reason="malformed"}`:      0,
		`swarmvpn_client_udp_reassociations_total`:          0,
		`swarmvpn_udp_drops_total{reason="link_down"}`:      0,
		`swarmvpn_udp_drops_total{reason="no_client_port"}`: 0,
		`swarmvpn_udp_drops_total{reason="stranger"}`:       0,
		`swarmvpn_udp_drops_total{reason="send_failed"}`:    0,
		`swarmvpn_client_dial_failures_total`:               0,
		`swarmvpn_client_link_downs_total`:                  0,
	}
	wantExit := map[string]float64{
		`swarmvpn_exit_links_open`:                                 1,
		`swarmvpn_exit_clients`:                                    1,
		`swarmvpn_exit_links_accepted_total`:                       1,
		`swarmvpn_exit_links_refused_total{reason="allow_list"}`:   0,
		`swarmvpn_exit_links_refused_total{reason="full"}`:         0,
		`swarmvpn_exit_links_refused_total{reason="handshake"}`:    0,
		`swarmvpn_exit_policy_refusals_total`:                      2,
		`swarmvpn_flows_open`:                                      1,
		`swarmvpn_flows_total{kind="connect"}`:                     flows + 2, // two refused: SMTP, the exit's own metrics
		`swarmvpn_flows_total{kind="udp"}`:                         1,
		`swarmvpn_flows_total{kind="forward"}`:                     1, // --forward auto asks; this exit lends none
		`swarmvpn_flows_total{kind="inbound"}`:                     0,
		`swarmvpn_flow_bytes_total{direction="in"}`:                tcpIn,
		`swarmvpn_flow_bytes_total{direction="out"}`:               tcpOut,
		`swarmvpn_udp_associations_open`:                           1,
		`swarmvpn_udp_datagrams_total{direction="in"}`:             datagrams,
		`swarmvpn_udp_datagrams_total{direction="out"}`:            datagrams,
		`swarmvpn_udp_bytes_total{direction="in"}`:                 udpBytes,
		`swarmvpn_udp_bytes_total{direction="out"}`:                udpBytes,
		`swarmvpn_udp_drops_total{reason="malformed"}`:             0,
		`swarmvpn_udp_drops_total{reason="policy"}`:                0,
		`swarmvpn_exit_forwards_open`:                              0,
		`swarmvpn_exit_links_refused_total{reason="client_links"}`: 0,
		`swarmvpn_exit_links_dropped_total`:                        0,
		`swarmvpn_udp_drops_total{reason="rate"}`:                  0,
		`swarmvpn_exit_rate_limited_bytes_total`:                   0, // no rate limit set
		`swarmvpn_exit_half_open_expired_total`:                    0,
	}
	// The proxies count a flow once both of its directions have ended,
	// which can be just after the application has seen the end.
	var gotClient, gotExit map[string]float64
	testnet.WaitFor(t, "the metrics to count every flow", func() bool {
		gotClient, gotExit = scrape(t, clientMetrics), scrape(t, exitMetrics)
		return matches(gotClient, wantClient) && matches(gotExit, wantExit)
	})
	expect(t, "client", gotClient, wantClient)
	expect(t, "exit", gotExit, wantExit)
	if gotExit[`swarmvpn_flows_total{kind="descriptor"}`] < 1 {
		t.Errorf("exit: no descriptor request counted")
	}
	for _, m := range []map[string]float64{gotClient, gotExit} {
		if m["go_goroutines"] <= 0 || m["process_open_fds"] <= 0 {
			t.Errorf("Go or process collector missing: go_goroutines %v, process_open_fds %v", m["go_goroutines"], m["process_open_fds"])
		}
	}
	if rtt := gotClient["swarmvpn_client_link_rtt_seconds"]; rtt <= 0 || rtt > 5 {
		t.Errorf("client: link rtt %v s", rtt)
	}

	// status shows the same figures: TCP and UDP bytes together.
	out, errOut, code := run(t, "status", "--state-dir", stateDir, "--json")
	var st client.Report
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Traffic == nil {
		t.Fatalf("status --json: exit %d, %q %q", code, out, errOut)
	}
	tr := st.Traffic
	if tr.FlowsOpen != 1 || tr.Flows != flows+1 || tr.BytesIn != uint64(tcpIn+udpBytes) || tr.BytesOut != uint64(tcpOut+udpBytes) {
		t.Errorf("status traffic %+v: want 1 open, %d flows, %v bytes in, %v out", tr, flows+1, tcpIn+udpBytes, tcpOut+udpBytes)
	}
	out, errOut, code = run(t, "status", "--state-dir", stateDir, "--interval", "100ms")
	wantFlows := fmt.Sprintf("flows    1 open, %d since start\n", flows+1)
	wantTraffic := fmt.Sprintf("traffic  in %s (0 B/s), out %s (0 B/s)\n", sizeOf(uint64(tcpIn+udpBytes)), sizeOf(uint64(tcpOut+udpBytes)))
	if code != 0 || !strings.Contains(out, wantFlows) || !strings.Contains(out, wantTraffic) {
		t.Errorf("status: exit %d, output\n%s%s\nwant lines %q and %q", code, out, errOut, wantFlows, wantTraffic)
	}

	// The metrics servers end with their processes.
	if code := clientProc.stop(t); code != 0 {
		t.Errorf("client exit code %d after SIGTERM", code)
	}
	if code := exit.stop(t); code != 0 {
		t.Errorf("exit exit code %d after SIGTERM", code)
	}
	if _, err := http.Get(clientMetrics); err == nil {
		t.Errorf("client metrics still served after the client stopped")
	}
}

// TestServeMetrics serves a registry and checks that Serve returns when its
// context ends, with the listener closed.
func TestServeMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	n := prometheus.NewCounter(prometheus.CounterOpts{Name: "swarmvpn_test_total", Help: "A test counter."})
	reg.MustRegister(n)
	n.Add(3)
	ctx, cancel := context.WithCancel(context.Background())
	var served error
	done := make(chan struct{})
	go func() { served = serveMetrics(ctx, ln, reg, slog.New(slog.DiscardHandler)); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	url := "http://" + ln.Addr().String() + "/metrics"
	if got := scrape(t, url); got["swarmvpn_test_total"] != 3 {
		t.Fatalf("scrape: %v", got)
	}
	if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}
	// On loopback, profiles are served too.
	resp, err := http.Get("http://" + ln.Addr().String() + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	index, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(index, []byte("goroutine")) {
		t.Fatalf("GET /debug/pprof/: %d %.200q", resp.StatusCode, index)
	}
	cancel()
	select {
	case <-done:
		if served != nil {
			t.Fatalf("serveMetrics: %v", served)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveMetrics did not return after its context ended")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the metrics listener is still open")
	}
}
