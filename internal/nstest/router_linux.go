package nstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Router is a home behind a real router: Debian's miniupnpd (UPnP-IGD and
// NAT-PMP) in a "router" namespace doing NAT with nftables between a
// "home" namespace (192.168.77.0/24) and an "internet" namespace (the WAN
// /24 given to NewRouter, which exists only there).
type Router struct {
	Home, Router, Inet string     // namespace names
	HomeAddr, LAN      netip.Addr // the home host, the router's LAN side
	WAN, InetAddr      netip.Addr // the router's public side, the internet host
	Conf               string     // miniupnpd's configuration file
}

// routerEnv carries a Router to a test binary re-run in its namespaces.
const routerEnv = "NSTEST_ROUTER"

// Env is the environment variable (NAME=value) by which RouterFromEnv
// finds r again in a test binary re-run inside one of r's namespaces.
func (r *Router) Env() string {
	b, _ := json.Marshal(r) // strings and addresses: it cannot fail
	return routerEnv + "=" + string(b)
}

// RouterFromEnv returns the Router a parent test passed with Env, or nil
// when none was passed.
func RouterFromEnv(t *testing.T) *Router {
	t.Helper()
	v := os.Getenv(routerEnv)
	if v == "" {
		return nil
	}
	r := new(Router)
	if err := json.Unmarshal([]byte(v), r); err != nil {
		t.Fatalf("%s: %v", routerEnv, err)
	}
	return r
}

// RouterTools skips the test (or, with CI set, fails it) when a Router
// cannot be built here.
func RouterTools(t *testing.T) {
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

// Run runs a command and fails the test if it fails.
func Run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// NewRouter builds the three namespaces (torn down when the test ends);
// wanNet is the first three octets of the router's public /24, whose .1 is
// the router and .2 the internet host. tag keeps names unique in a test.
func NewRouter(t *testing.T, tag, wanNet string) *Router {
	t.Helper()
	s := fmt.Sprintf("%d%s", os.Getpid()%100000, tag)
	r := &Router{Home: "svh" + s, Router: "svr" + s, Inet: "svi" + s,
		HomeAddr: netip.MustParseAddr("192.168.77.2"), LAN: netip.MustParseAddr("192.168.77.1"),
		WAN: netip.MustParseAddr(wanNet + ".1"), InetAddr: netip.MustParseAddr(wanNet + ".2")}
	for _, n := range []string{r.Home, r.Router, r.Inet} {
		Run(t, "ip", "netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
		Run(t, "ip", "-n", n, "link", "set", "lo", "up")
	}
	hv, rl, rw, iv := "h"+s, "rl"+s, "rw"+s, "i"+s
	for _, c := range [][]string{
		{"link", "add", hv, "netns", r.Home, "type", "veth", "peer", "name", rl, "netns", r.Router},
		{"link", "add", rw, "netns", r.Router, "type", "veth", "peer", "name", iv, "netns", r.Inet},
		{"-n", r.Home, "addr", "add", r.HomeAddr.String() + "/24", "dev", hv},
		{"-n", r.Home, "link", "set", hv, "up"},
		{"-n", r.Home, "route", "add", "default", "via", r.LAN.String()},
		{"-n", r.Router, "addr", "add", r.LAN.String() + "/24", "dev", rl},
		{"-n", r.Router, "link", "set", rl, "up"},
		{"-n", r.Router, "addr", "add", r.WAN.String() + "/24", "dev", rw},
		{"-n", r.Router, "link", "set", rw, "up"},
		{"-n", r.Inet, "addr", "add", r.InetAddr.String() + "/24", "dev", iv},
		{"-n", r.Inet, "link", "set", iv, "up"},
	} {
		Run(t, append([]string{"ip"}, c...)...)
	}
	Run(t, "ip", "netns", "exec", r.Router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
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
	r.Conf = filepath.Join(dir, "miniupnpd.conf")
	if err := os.WriteFile(rules, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	Run(t, "ip", "netns", "exec", r.Router, "nft", "-f", rules)
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
	if err := os.WriteFile(r.Conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// Gateway is one run of miniupnpd in the router namespace.
type Gateway struct {
	cmd *exec.Cmd
	out *lockedBuffer
}

// StartGateway runs miniupnpd in the router namespace until Stop or the
// end of the test, and waits until it listens.
func (r *Router) StartGateway(t *testing.T) *Gateway {
	t.Helper()
	out := new(lockedBuffer)
	cmd := exec.Command("ip", "netns", "exec", r.Router, "miniupnpd", "-d", "-f", r.Conf,
		"-P", filepath.Join(filepath.Dir(r.Conf), "miniupnpd.pid"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &Gateway{cmd: cmd, out: out}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("miniupnpd:\n%s", out)
		}
	})
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(out.String(), "Listening for NAT-PMP/PCP traffic") {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("miniupnpd did not start:\n%s", out)
		}
	}
	return g
}

// Stop ends this run of miniupnpd and waits for it; later calls do nothing.
func (g *Gateway) Stop() {
	if g.cmd.ProcessState != nil {
		return
	}
	g.cmd.Process.Signal(syscall.SIGTERM) // ip netns exec has become miniupnpd: same PID
	g.cmd.Wait()
}

// ForgetMappings removes every mapping miniupnpd made, as a reboot of the
// router would; stop the gateway first.
func (r *Router) ForgetMappings(t *testing.T) {
	t.Helper()
	for _, chain := range []string{"prerouting_miniupnpd", "postrouting_miniupnpd", "miniupnpd"} {
		Run(t, "ip", "netns", "exec", r.Router, "nft", "flush", "chain", "inet", "filter", chain)
	}
}

// NATRules lists the port mappings miniupnpd made (its dnat rules).
func (r *Router) NATRules(t *testing.T) string {
	t.Helper()
	return Run(t, "ip", "netns", "exec", r.Router, "nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd")
}

// In runs f on an OS thread moved into namespace ns: the sockets f opens
// live there, and stay usable from any goroutine afterwards.
func In(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
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
