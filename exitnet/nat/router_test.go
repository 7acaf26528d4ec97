package nat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The real-router tests: Debian's miniupnpd (package miniupnpd-nftables)
// in a "router" network namespace, doing NAT with nftables between a "home"
// namespace (192.168.77.0/24) and an "internet" namespace (a public-looking
// 11.7.0.0/24 that exists only there). The Mapper runs inside "home": the
// test binary re-runs itself there (TestRouterHome), and once more in
// "internet" to send traffic to the router's public address (TestRouterProbe).

const (
	envScenario = "NATTEST_SCENARIO"
	envRouter   = "NATTEST_ROUTER"
	envInet     = "NATTEST_INET"
	envConf     = "NATTEST_CONF"
	envWAN      = "NATTEST_WAN"
	envProbe    = "NATTEST_PROBE"

	homeAddr = "192.168.77.2"
	lanAddr  = "192.168.77.1"
)

// routerTools skips (or, with CI set, fails) when the real-router tests
// cannot run here.
func routerTools(t *testing.T) {
	t.Helper()
	unavailable := func(why string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("the real-router test needs %s", why)
		}
		t.Skipf("the real-router test needs %s (install miniupnpd-nftables, nftables, iproute2; run as root)", why)
	}
	if os.Geteuid() != 0 {
		unavailable("root")
	}
	for _, tool := range []string{"ip", "nft", "miniupnpd"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(tool + " (" + err.Error() + ")")
		}
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// topology creates home, router and internet namespaces (torn down when
// the test ends) and returns their names, the router's WAN address and the
// path of miniupnpd's configuration.
func topology(t *testing.T, tag, wanNet string) (home, router, inet, wan, conf string) {
	t.Helper()
	s := fmt.Sprintf("%d%s", os.Getpid()%100000, tag)
	home, router, inet = "nath"+s, "natr"+s, "nati"+s
	for _, n := range []string{home, router, inet} {
		run(t, "ip", "netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
		run(t, "ip", "-n", n, "link", "set", "lo", "up")
	}
	hv, rl, rw, iv := "h"+s, "rl"+s, "rw"+s, "i"+s
	wan = wanNet + ".1"
	for _, c := range [][]string{
		{"link", "add", hv, "netns", home, "type", "veth", "peer", "name", rl, "netns", router},
		{"link", "add", rw, "netns", router, "type", "veth", "peer", "name", iv, "netns", inet},
		{"-n", home, "addr", "add", homeAddr + "/24", "dev", hv},
		{"-n", home, "link", "set", hv, "up"},
		{"-n", home, "route", "add", "default", "via", lanAddr},
		{"-n", router, "addr", "add", lanAddr + "/24", "dev", rl},
		{"-n", router, "link", "set", rl, "up"},
		{"-n", router, "addr", "add", wan + "/24", "dev", rw},
		{"-n", router, "link", "set", rw, "up"},
		{"-n", inet, "addr", "add", wanNet + ".2/24", "dev", iv},
		{"-n", inet, "link", "set", iv, "up"},
	} {
		run(t, append([]string{"ip"}, c...)...)
	}
	run(t, "ip", "netns", "exec", router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	ruleset := fmt.Sprintf(`table inet filter {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "%[1]s" oifname "%[2]s" accept
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    oifname "%[2]s" masquerade
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
`, rl, rw)
	dir := t.TempDir()
	rules := filepath.Join(dir, "router.nft")
	conf = filepath.Join(dir, "miniupnpd.conf")
	if err := os.WriteFile(rules, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "exec", router, "nft", "-f", rules)
	cfg := fmt.Sprintf(`ext_ifname=%s
listening_ip=%s
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
uuid=3f1a2b4c-7e57-4000-8000-%012d
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 192.168.77.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`, rw, rl, os.Getpid())
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return home, router, inet, wan, conf
}

// TestRouter runs each scenario of TestRouterHome inside a home behind its
// own miniupnpd.
func TestRouter(t *testing.T) {
	if os.Getenv(envScenario) != "" || os.Getenv(envProbe) != "" {
		t.Skip("runs TestRouterHome and TestRouterProbe")
	}
	routerTools(t)
	for i, sc := range []struct{ name, wan string }{
		{"upnp", "11.7.0"},
		{"natpmp", "11.7.0"},
		{"auto-restart", "11.7.0"},
		{"upnp-restart", "11.7.0"},
		{"doublenat", "100.64.0"},
	} {
		t.Run(sc.name, func(t *testing.T) {
			home, router, inet, wan, conf := topology(t, fmt.Sprint("s", i), sc.wan)
			cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", home, "env",
				envScenario+"="+sc.name, envRouter+"="+router, envInet+"="+inet, envConf+"="+conf, envWAN+"="+wan,
				os.Args[0], "-test.run", "^TestRouterHome$", "-test.v", "-test.count=1", "-test.timeout=90s")
			out, err := cmd.CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("--- PASS: TestRouterHome")) {
				t.Fatalf("in the home namespace: %v\n%s", err, out)
			}
			t.Logf("in the home namespace:\n%s", out)
		})
	}
}

// miniupnpd is one run of the router's daemon.
type miniupnpd struct {
	cmd *exec.Cmd
	out *lockedBuffer
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startMiniupnpd(t *testing.T, router, conf string) *miniupnpd {
	t.Helper()
	out := new(lockedBuffer)
	cmd := exec.Command("ip", "netns", "exec", router, "miniupnpd", "-d", "-f", conf,
		"-P", filepath.Join(filepath.Dir(conf), "miniupnpd.pid"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &miniupnpd{cmd: cmd, out: out}
	t.Cleanup(d.stop)
	eventually(t, 10*time.Second, "miniupnpd did not start:\n"+out.String(), func() bool {
		return strings.Contains(out.String(), "Listening for NAT-PMP/PCP traffic")
	})
	return d
}

// stop ends this run (ip netns exec has become miniupnpd: same PID).
func (d *miniupnpd) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
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
	router, inet, conf := os.Getenv(envRouter), os.Getenv(envInet), os.Getenv(envConf)
	wan := netip.MustParseAddr(os.Getenv(envWAN))
	daemon := startMiniupnpd(t, router, conf)
	defer func() {
		if t.Failed() {
			t.Logf("miniupnpd:\n%s", daemon.out)
		}
	}()

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
	natRules := func() string {
		return run(t, "ip", "netns", "exec", router, "nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd")
	}
	dnatTo := func(ext uint16) bool {
		return strings.Contains(natRules(), fmt.Sprintf("dport %d dnat ip to %s:", ext, homeAddr))
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
	probe(t, inet, "tcp", netip.AddrPortFrom(wan, extTCP))
	probe(t, inet, "udp", netip.AddrPortFrom(wan, extUDP))

	if strings.HasSuffix(scenario, "restart") {
		// The router vanishes: renewals fail, are logged and retried.
		daemon.stop()
		eventually(t, 10*time.Second, "a vanished gateway not noticed", func() bool {
			st := m.Status()
			return st.Method == "" && st.Err != ""
		})
		t.Logf("while the router is gone: %+v", m.Status())
		// It comes back having lost every mapping, as after a reboot.
		for _, chain := range []string{"prerouting_miniupnpd", "postrouting_miniupnpd", "miniupnpd"} {
			run(t, "ip", "netns", "exec", router, "nft", "flush", "chain", "inet", "filter", chain)
		}
		daemon = startMiniupnpd(t, router, conf)
		eventually(t, 15*time.Second, "mappings not re-created after the router restarted", func() bool {
			st := m.Status()
			return st.Method != "" && len(st.Mappings) == 2 && st.Mappings[0].Active && st.Mappings[1].Active &&
				dnatTo(st.Mappings[0].External) && dnatTo(st.Mappings[1].External)
		})
		st := m.Status()
		t.Logf("after the restart: %+v", st)
		probe(t, inet, "tcp", netip.AddrPortFrom(wan, st.Mappings[0].External))
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
