package mainline

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/int160"
	"golang.org/x/time/rate"
)

// testNet is an in-process DHT on loopback.
type testNet struct {
	nodes []*Node
	addrs []string
}

// listenUDP binds a UDP socket at ip (any port) on loopback.
func listenUDP(t testing.TB, ip string) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen %s: %v", ip, err)
	}
	return c
}

// testConfig is a node config for tests: its own unlimited send limiter, labs addresses allowed,
// short operation timeout, never the public routers.
func testConfig(conn net.PacketConn, bootstrap []string) Config {
	if len(bootstrap) == 0 {
		bootstrap = []string{"127.0.0.1:1"} // nothing listens: never the public routers
	}
	return Config{
		Conn:         conn,
		Bootstrap:    bootstrap,
		AllowPrivate: true,
		SendLimiter:  rate.NewLimiter(rate.Inf, 0),
		OpTimeout:    15 * time.Second,
	}
}

// startNode runs a node until the test ends.
func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- n.Run(context.Background()) }()
	t.Cleanup(func() {
		n.Close()
		if err := <-errc; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return n
}

// waitReady waits for all nodes to be ready.
func waitReady(t testing.TB, nodes ...*Node) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for _, n := range nodes {
		select {
		case <-n.Ready():
		case <-deadline:
			t.Fatal("nodes not ready in 30s")
		}
	}
}

// newTestNet starts size nodes on 127.0.0.1, each bootstrapped from a few others.
func newTestNet(t testing.TB, size int) *testNet {
	t.Helper()
	tn := &testNet{}
	conns := make([]net.PacketConn, size)
	for i := range conns {
		conns[i] = listenUDP(t, "127.0.0.1")
		tn.addrs = append(tn.addrs, conns[i].LocalAddr().String())
	}
	for i, c := range conns {
		// The first few nodes plus a neighbour: every node reaches the same core.
		bs := []string{tn.addrs[(i+1)%size], tn.addrs[(i+size-1)%size]}
		for j := 0; j < 3 && j < size; j++ {
			if j != i {
				bs = append(bs, tn.addrs[j])
			}
		}
		tn.nodes = append(tn.nodes, startNode(t, testConfig(c, bs)))
	}
	waitReady(t, tn.nodes...)
	return tn
}

// bootstrap returns a few node addresses to bootstrap from.
func (tn *testNet) bootstrap() []string { return tn.addrs[:4] }

// closest returns the addresses of the k nodes whose IDs are closest to target.
func (tn *testNet) closest(target [20]byte, k int) []netip.AddrPort {
	type nd struct {
		d    int160.T
		addr netip.AddrPort
	}
	tg := int160.FromByteArray(target)
	var ns []nd
	for _, n := range tn.nodes {
		srv := n.srv.Load()
		id := int160.FromByteArray(srv.ID())
		ns = append(ns, nd{int160.Distance(id, tg), netip.MustParseAddrPort(srv.Addr().String())})
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i].d.Cmp(ns[j].d) < 0 })
	var out []netip.AddrPort
	for i := 0; i < k && i < len(ns); i++ {
		out = append(out, ns[i].addr)
	}
	return out
}

// parallel runs f(i) for i in [0,n) with at most par at once.
func parallel(n, par int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}

func ipf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

func nil2discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
