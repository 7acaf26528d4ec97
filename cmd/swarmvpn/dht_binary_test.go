package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/internal/nstest"
)

// TestBinaryDHT runs, as separate processes in a network namespace of its
// own, eight 'swarmvpn dht' nodes, two exits that publish themselves on
// them, and a client given only --dht-bootstrap with mDNS off. The client
// finds the exits, carries a download, and once its link is up its own DHT
// socket goes quiet (counted by nftables) while its lookups go on through
// the exit.
func TestBinaryDHT(t *testing.T) {
	if testing.Short() {
		t.Skip("processes in a network namespace")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (Debian package nftables) to count the client's datagrams")
	}
	if !nstest.Isolated(t, "link set lo up") {
		return
	}
	dir := t.TempDir()
	const clientDHT = "127.20.0.1:6881"
	nft := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("nft", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("nft %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	nft("add", "table", "inet", "swarmvpn_test")
	nft("add", "chain", "inet", "swarmvpn_test", "out", "{ type filter hook output priority 0 ; }")
	nft("add", "rule", "inet", "swarmvpn_test", "out", "ip", "saddr", "127.20.0.1", "udp", "sport", "6881", "counter")
	counterRe := regexp.MustCompile(`counter packets (\d+)`)
	sentFromClient := func() int {
		m := counterRe.FindStringSubmatch(nft("list", "chain", "inet", "swarmvpn_test", "out"))
		if m == nil {
			t.Fatal("no nft counter")
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}

	// The DHT: node 0 starts from node 1, every other node from node 0.
	const dhtNodes = 8
	node := func(i int) string { return fmt.Sprintf("127.0.50.%d:6881", i+1) }
	for i := range dhtNodes {
		bs := node(0)
		if i == 0 {
			bs = node(1)
		}
		start(t, "dht", "--listen", node(i), "--bootstrap", bs, "--allow-private", "--log-format", "json")
	}
	for i := range 2 {
		ip := fmt.Sprintf("127.%d.0.1", 10+i)
		start(t, "exit", "--state-dir", filepath.Join(dir, fmt.Sprintf("exit%d", i)), "--listen", ip+":7843", "--allow-private",
			"--dht", "--dht-listen", ip+":6881", "--dht-bootstrap", node(0), "--log-format", "json")
	}

	blob := make([]byte, 4<<20)
	rand.Read(blob)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(blob) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	t0 := time.Now()
	cdir := filepath.Join(dir, "client")
	start(t, "connect", "--state-dir", cdir, "--dht", "--dht-bootstrap", node(0), "--dht-listen", clientDHT,
		"--allow-private-exits", "--mdns=false", "--dht-lookup-every", "1s", "--forward", "off",
		"--socks", "127.0.0.1:1080", "--http", "127.0.0.1:8118", "--log-format", "json")
	status := func() client.Report {
		out, _, code := run(t, "status", "--state-dir", cdir, "--json")
		var r client.Report
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
			return client.Report{}
		}
		return r
	}
	waitUntil(t, "the client linked to an exit found on the DHT", 40*time.Second, func() bool { return status().Link == "up" })
	t.Logf("link up %v after the client started", time.Since(t0).Round(time.Millisecond))

	proxyURL, _ := url.Parse("http://127.0.0.1:8118")
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 20 * time.Second}
	resp, err := hc.Get("http://" + ln.Addr().String() + "/blob")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("download through the exit: %d bytes, %v", len(got), err)
	}

	waitUntil(t, "the client's dht node behind the exit", 20*time.Second, func() bool {
		d := status().DHT
		return d != nil && d.Path == "exit" && d.ExitSent > 0 && !d.LastLookup.IsZero()
	})
	before, at := sentFromClient(), status().DHT
	waitUntil(t, "two more lookups through the exit", 20*time.Second, func() bool {
		d := status().DHT
		return d != nil && d.LastLookup.After(at.LastLookup.Add(time.Second)) && d.ExitSent > at.ExitSent
	})
	after, d := sentFromClient(), status().DHT
	t.Logf("datagrams from the client's own dht socket: %d before the link (direct %d counted by the client); %d after; through the exit %d",
		before, at.DirectSent, after-before, d.ExitSent)
	if before == 0 || after != before {
		t.Fatalf("the client's own dht socket sent %d datagrams before the link and %d after it", before, after-before)
	}
	if peers, _, _ := run(t, "peers", "--state-dir", cdir); !bytes.Contains([]byte(peers), []byte(" dht ")) {
		t.Fatalf("peers does not show the source dht:\n%s", peers)
	}
}

// waitUntil polls cond until it holds or d has passed.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(d)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}
