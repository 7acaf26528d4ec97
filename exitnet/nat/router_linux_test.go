package nat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/nstest"
	"github.com/swarmvpn/swarmvpn/internal/syncbuf"
)

// The real-router tests: Debian's miniupnpd (package miniupnpd-nftables)
// in a "router" network namespace, doing NAT with nftables between a "home"
// namespace (192.168.77.0/24) and an "internet" namespace (a public-looking
// 11.7.0.0/24 that exists only there), built by nstest.Router. The Mapper
// runs inside "home": the test binary re-runs itself there (TestRouterHome),
// and once more in "internet" to send traffic to the router's public
// address (TestRouterProbe).

const (
	envScenario = "NATTEST_SCENARIO"
	envProbe    = "NATTEST_PROBE"
	envChild    = "NATTEST_CHILD" // "MODE RECORDPATH": TestRouterCrashChild maps and waits to be killed
)

// TestRouter runs each scenario of TestRouterHome inside a home behind its
// own miniupnpd.
func TestRouter(t *testing.T) {
	if os.Getenv(envScenario) != "" || os.Getenv(envProbe) != "" || os.Getenv(envChild) != "" {
		t.Skip("runs TestRouterHome and TestRouterProbe")
	}
	nstest.RouterTools(t)
	for i, sc := range []struct{ name, wan string }{
		{"upnp", "11.7.0"},
		{"natpmp", "11.7.0"},
		{"auto-restart", "11.7.0"},
		{"upnp-restart", "11.7.0"},
		{"doublenat", "100.64.0"},
		{"crash-upnp", "11.7.0"},
		{"crash-natpmp", "11.7.0"},
		{"placed", "11.7.0"},
	} {
		t.Run(sc.name, func(t *testing.T) {
			r := nstest.NewRouter(t, fmt.Sprint("s", i), sc.wan)
			cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", r.Home, "env",
				envScenario+"="+sc.name, r.Env(),
				os.Args[0], "-test.run", "^TestRouterHome$", "-test.v", "-test.count=1", "-test.timeout=90s")
			out, err := cmd.CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("--- PASS: TestRouterHome")) {
				t.Fatalf("in the home namespace: %v\n%s", err, out)
			}
			t.Logf("in the home namespace:\n%s", out)
		})
	}
}

// eventually waits up to d for cond, checking every 100 ms.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(d)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("after %v: %s", d, what)
		}
	}
}

// TestRouterHome runs in the home namespace, started by TestRouter.
func TestRouterHome(t *testing.T) {
	scenario := os.Getenv(envScenario)
	if scenario == "" {
		t.Skip("started by TestRouter inside the home namespace")
	}
	r := nstest.RouterFromEnv(t)
	if r == nil {
		t.Fatal("no router passed by TestRouter")
	}
	wan := r.WAN
	gateway := r.StartGateway(t)
	if mode, ok := strings.CutPrefix(scenario, "crash-"); ok {
		crashAndRecover(t, r, mode)
		return
	}
	if scenario == "placed" {
		placedAndRecover(t, r)
		return
	}

	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{Log: log, RetryMin: 200 * time.Millisecond, RetryMax: time.Second}
	switch scenario {
	case "upnp", "upnp-restart":
		cfg.Mode = ModeUPnP
	case "natpmp":
		cfg.Mode = ModeNATPMP
	default:
		cfg.Mode = ModeAuto
	}
	if strings.HasSuffix(scenario, "restart") {
		cfg.Lifetime = 4 * time.Second
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(context.Background()) }()
	t.Cleanup(func() { m.Close(); <-runDone })

	// What miniupnpd put in the router's nat chain.
	natRules := func() string { return r.NATRules(t) }
	dnatTo := func(ext uint16) bool {
		return strings.Contains(natRules(), fmt.Sprintf("dport %d dnat ip to %s:", ext, r.HomeAddr))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	if scenario == "doublenat" {
		// miniupnpd refuses to map behind a reserved external address.
		if _, err := m.Add(ctx, "tcp", 7000); err == nil {
			t.Error("a mapping behind a reserved external address succeeded")
		}
		eventually(t, 10*time.Second, "no double-NAT report", func() bool { return m.Status().DoubleNAT })
		a, err := m.ExternalAddr()
		if !errors.Is(err, ErrDoubleNAT) || a.IsValid() {
			t.Fatalf("ExternalAddr = %v, %v; want ErrDoubleNAT", a, err)
		}
		st := m.Status()
		t.Logf("status: %+v", st)
		if st.External.IsValid() || !strings.Contains(st.Err, "ask the ISP") {
			t.Fatalf("status %+v", st)
		}
		return
	}

	tcpLn, err := net.Listen("tcp4", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcpLn.Close() })
	go echoTCP(tcpLn)
	udpLn, err := net.ListenPacket("udp4", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udpLn.Close() })
	go echoUDP(udpLn)

	extTCP, err := m.Add(ctx, "tcp", 7000)
	if err != nil {
		t.Fatalf("map tcp 7000: %v", err)
	}
	extUDP, err := m.Add(ctx, "udp", 7000)
	if err != nil {
		t.Fatalf("map udp 7000: %v", err)
	}
	st := m.Status()
	t.Logf("mapped tcp 7000 -> %d, udp 7000 -> %d; status %+v", extTCP, extUDP, st)
	if a, err := m.ExternalAddr(); err != nil || a != wan {
		t.Fatalf("ExternalAddr = %v, %v; want %v", a, err, wan)
	}
	if want := map[string]string{"upnp": MethodUPnP, "natpmp": MethodNATPMP}[cfg.Mode]; want != "" && st.Method != want {
		t.Fatalf("method %q, want %q", st.Method, want)
	}
	if !dnatTo(extTCP) || !dnatTo(extUDP) {
		t.Fatalf("no dnat rules for %d/%d:\n%s", extTCP, extUDP, natRules())
	}
	probe(t, r.Inet, "tcp", netip.AddrPortFrom(wan, extTCP))
	probe(t, r.Inet, "udp", netip.AddrPortFrom(wan, extUDP))

	if strings.HasSuffix(scenario, "restart") {
		// The router vanishes: renewals fail, are logged and retried.
		gateway.Stop()
		eventually(t, 10*time.Second, "a vanished gateway not noticed", func() bool {
			st := m.Status()
			return st.Method == "" && st.Err != ""
		})
		t.Logf("while the router is gone: %+v", m.Status())
		// It comes back having lost every mapping, as after a reboot.
		r.ForgetMappings(t)
		r.StartGateway(t)
		eventually(t, 15*time.Second, "mappings not re-created after the router restarted", func() bool {
			st := m.Status()
			return st.Method != "" && len(st.Mappings) == 2 && st.Mappings[0].Active && st.Mappings[1].Active &&
				dnatTo(st.Mappings[0].External) && dnatTo(st.Mappings[1].External)
		})
		st := m.Status()
		t.Logf("after the restart: %+v", st)
		probe(t, r.Inet, "tcp", netip.AddrPortFrom(wan, st.Mappings[0].External))
	}

	// Remove deletes one; Close deletes the rest.
	if err := m.Remove(ctx, "udp", 7000); err != nil {
		t.Fatal(err)
	}
	if rules := natRules(); strings.Contains(rules, "udp dport") {
		t.Fatalf("udp mapping left after Remove:\n%s", rules)
	}
	m.Close()
	if rules := natRules(); strings.Contains(rules, "dnat") {
		t.Fatalf("mappings left after Close:\n%s", rules)
	}
}

func echoTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			c.Write(append([]byte("home:"), buf[:n]...))
		}()
	}
}

func echoUDP(pc net.PacketConn) {
	buf := make([]byte, 64)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(append([]byte("home:"), buf[:n]...), from)
	}
}

// probe sends a message from the internet namespace to dst and checks that
// the listener in home answered it.
func probe(t *testing.T, inet, proto string, dst netip.AddrPort) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", inet, "env", envProbe+"="+proto+" "+dst.String(),
		os.Args[0], "-test.run", "^TestRouterProbe$", "-test.v", "-test.count=1", "-test.timeout=30s").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestRouterProbe")) {
		t.Fatalf("%s to %v from the internet: %v\n%s", proto, dst, err, out)
	}
	t.Logf("%s to %v from the internet reached home", proto, dst)
}

// TestRouterProbe runs in the internet namespace, started by probe.
func TestRouterProbe(t *testing.T) {
	spec := os.Getenv(envProbe)
	if spec == "" {
		t.Skip("started by the real-router test inside the internet namespace")
	}
	proto, dst, _ := strings.Cut(spec, " ")
	want := "home:ping"
	buf := make([]byte, 64)
	for try := range 5 {
		c, err := net.DialTimeout(proto, dst, 2*time.Second)
		if err != nil {
			t.Logf("try %d: %v", try, err)
			continue
		}
		c.SetDeadline(time.Now().Add(time.Second))
		c.Write([]byte("ping"))
		n, err := c.Read(buf)
		c.Close()
		if err == nil && string(buf[:n]) == want {
			return
		}
		t.Logf("try %d: %q, %v", try, buf[:n], err)
	}
	t.Fatalf("no answer from home through %s %s", proto, dst)
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// crashAndRecover: a Mapper in another process maps ports and is killed
// (SIGKILL), so it deletes nothing; the router keeps forwarding them. The
// next Mapper with the same record file deletes them before it maps
// anything, and says so.
func crashAndRecover(t *testing.T, r *nstest.Router, mode string) {
	record := filepath.Join(t.TempDir(), "nat.json")
	child := exec.Command(os.Args[0], "-test.run", "^TestRouterCrashChild$", "-test.v", "-test.count=1", "-test.timeout=60s")
	child.Env = append(os.Environ(), envChild+"="+mode+" "+record)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	mapped := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), "MAPPED "); ok {
				mapped <- l
			}
		}
		close(mapped)
	}()
	var ports string
	select {
	case ports = <-mapped:
	case <-time.After(30 * time.Second):
		t.Fatal("the first mapper mapped nothing in 30 s")
	}
	var tcpExt, udpExt uint16
	if _, err := fmt.Sscan(ports, &tcpExt, &udpExt); err != nil {
		t.Fatalf("child said %q: %v", ports, err)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	// miniupnpd's rules name the protocol by number: count them.
	rules := r.NATRules(t)
	to := func(ext uint16, internal int) string {
		return fmt.Sprintf("dport %d dnat ip to %s:%d", ext, r.HomeAddr, internal)
	}
	if tcpExt != udpExt || strings.Count(rules, to(tcpExt, 7001)) != 2 {
		t.Fatalf("after the kill, not two mappings %d -> 7001 at the router:\n%s", tcpExt, rules)
	}
	rec, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("no record after the kill: %v", err)
	}
	t.Logf("killed with its mappings in place; record:\n%s", rec)

	// A mapping the record names that the router now forwards elsewhere
	// (here: to another port of this host, made by another program) is
	// not ours: it must stay.
	foreign := false
	if _, err := exec.LookPath("upnpc"); err == nil {
		nstest.Run(t, "upnpc", "-a", r.HomeAddr.String(), "7006", "7005", "TCP")
		recs, err := parseRecord(rec)
		if err != nil || len(recs) == 0 {
			t.Fatalf("record: %v, %v", recs, err)
		}
		other := recs[0]
		other.Proto, other.Internal, other.External = "tcp", 7005, 7005
		if err := os.WriteFile(record, marshalRecord(append(recs, other)), 0o600); err != nil {
			t.Fatal(err)
		}
		foreign = true
	} else {
		t.Log("upnpc (Debian package miniupnpc) not installed: not checking that another program's mapping is left alone")
	}

	// The next run, on the same record, maps another port.
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := New(Config{Mode: mode, Log: log, RecordPath: record, RetryMin: 200 * time.Millisecond, RetryMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(context.Background()) }()
	t.Cleanup(func() { m.Close(); <-runDone })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ext, err := m.Add(ctx, "tcp", 7002)
	if err != nil {
		t.Fatal(err)
	}
	// Add returns once the gateway is found and the port mapped, so the
	// leftovers were dealt with before.
	rules = r.NATRules(t)
	if strings.Contains(rules, ":7001") || !strings.Contains(rules, to(ext, 7002)) {
		t.Fatalf("after the restart the router holds:\n%s", rules)
	}
	if foreign && !strings.Contains(rules, to(7005, 7006)) {
		t.Fatalf("another program's mapping was deleted:\n%s", rules)
	}
	// (NAT-PMP answers a deletion of a port it does not map with success,
	// so the foreign one may be logged as deleted too: it stays, checked
	// above.)
	if n := strings.Count(logs.String(), `deleted a mapping an earlier run left" proto=tcp port=7001`) +
		strings.Count(logs.String(), `deleted a mapping an earlier run left" proto=udp port=7001`); n != 2 {
		t.Fatalf("%d deletions logged, want 2:\n%s", n, logs.String())
	}
	m.Close()
	if foreign {
		nstest.Run(t, "upnpc", "-d", "7005", "TCP")
	}
	if rules := r.NATRules(t); strings.Contains(rules, "dnat") {
		t.Fatalf("mappings left after Close:\n%s", rules)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("record after a clean stop: %v", err)
	}
}

// placedAndRecover: a run that asked the IGDv2 router for an external port
// another mapping held, and ended before it wrote down the one the router
// placed its mapping at (AddAnyPortMapping), left in its record the port it
// asked for. Made here with upnpc: the router forwards tcp 7020 to
// home:7010 under our description, and 7010 to home:7011 under another
// program's; the record names 7010 to home:7010. The next run deletes the
// first, found in the router's list, and leaves the second, and those to
// home:7010 of another program (tcp 7030) or of the other protocol (udp
// 7040, not recorded).
func placedAndRecover(t *testing.T, r *nstest.Router) {
	if _, err := exec.LookPath("upnpc"); err != nil {
		t.Skip("upnpc (Debian package miniupnpc) not installed")
	}
	home := r.HomeAddr.String()
	nstest.Run(t, "upnpc", "-e", description, "-a", home, "7010", "7020", "TCP", "3600")
	nstest.Run(t, "upnpc", "-a", home, "7011", "7010", "TCP", "3600")
	nstest.Run(t, "upnpc", "-e", "another program", "-a", home, "7010", "7030", "TCP", "3600")
	nstest.Run(t, "upnpc", "-e", description, "-a", home, "7010", "7040", "UDP", "3600")
	t.Cleanup(func() {
		for _, m := range [][]string{{"7010", "TCP"}, {"7030", "TCP"}, {"7040", "UDP"}} {
			exec.Command("upnpc", "-d", m[0], m[1]).Run()
		}
	})
	to := func(ext uint16, internal int) string {
		return fmt.Sprintf("dport %d dnat ip to %s:%d", ext, r.HomeAddr, internal)
	}
	others := []string{to(7010, 7011), to(7030, 7010), "0x11 th " + to(7040, 7010)} // 0x11: UDP
	if rules := r.NATRules(t); !strings.Contains(rules, to(7020, 7010)) || !containsAll(rules, others) {
		t.Fatalf("upnpc did not map:\n%s", rules)
	}
	record := filepath.Join(t.TempDir(), "nat.json")
	left := recorded{Method: MethodUPnP, Gateway: r.LAN, Client: r.HomeAddr, Proto: "tcp", Internal: 7010, External: 7010}
	if err := os.WriteFile(record, marshalRecord([]recorded{left}), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := New(Config{Mode: ModeUPnP, Log: log, RecordPath: record, RetryMin: 200 * time.Millisecond, RetryMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(context.Background()) }()
	t.Cleanup(func() { m.Close(); <-runDone })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ext, err := m.Add(ctx, "tcp", 7012)
	if err != nil {
		t.Fatal(err)
	}
	rules := r.NATRules(t)
	if strings.Contains(rules, to(7020, 7010)) || !containsAll(rules, others) || !strings.Contains(rules, to(ext, 7012)) {
		t.Fatalf("after the restart the router holds:\n%s", rules)
	}
	if want := `at the external port the router chose" proto=tcp port=7010 external=7020 asked=7010`; !strings.Contains(logs.String(), want) {
		t.Fatalf("no %q in the log:\n%s", want, logs.String())
	}
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestRouterCrashChild maps tcp and udp 7001 with a record file, prints
// their external ports, and waits to be killed; started by crashAndRecover.
func TestRouterCrashChild(t *testing.T) {
	spec := os.Getenv(envChild)
	if spec == "" {
		t.Skip("started by the real-router test inside the home namespace")
	}
	mode, record, _ := strings.Cut(spec, " ")
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	m, err := New(Config{Mode: mode, Log: log, RecordPath: record})
	if err != nil {
		t.Fatal(err)
	}
	go m.Run(context.Background())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tcpExt, err := m.Add(ctx, "tcp", 7001)
	if err != nil {
		t.Fatal(err)
	}
	udpExt, err := m.Add(ctx, "udp", 7001)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("MAPPED %d %d\n", tcpExt, udpExt)
	<-t.Context().Done() // killed long before the test's timeout
}
