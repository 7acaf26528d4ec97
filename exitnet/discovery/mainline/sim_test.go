package mainline

import (
	"context"
	"crypto/ed25519"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts what a node sends and receives.
type countingConn struct {
	net.PacketConn
	sent, sentBytes, recv, recvBytes atomic.Int64
}

func (c *countingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.sent.Add(1)
	c.sentBytes.Add(int64(len(b)))
	return c.PacketConn.WriteTo(b, addr)
}

func (c *countingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.recv.Add(1)
		c.recvBytes.Add(int64(n))
	}
	return n, a, err
}

func (c *countingConn) snapshot() [4]int64 {
	return [4]int64{c.sent.Load(), c.sentBytes.Load(), c.recv.Load(), c.recvBytes.Load()}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestSimulatedNetwork measures lookup success, time to find and the cost of publishing on a
// larger loopback DHT. It is an experiment, not a test of the package: it runs only with
// SWARMVPN_DHT_SIM=1 (SIM_NODES, SIM_EXITS and SIM_TRIALS change its size).
//
//	SWARMVPN_DHT_SIM=1 go test -run TestSimulatedNetwork -v -timeout 20m ./exitnet/discovery/mainline/
func TestSimulatedNetwork(t *testing.T) {
	if os.Getenv("SWARMVPN_DHT_SIM") == "" {
		t.Skip("experiment: set SWARMVPN_DHT_SIM=1")
	}
	nodes, exitCount, trials := envInt("SIM_NODES", 200), envInt("SIM_EXITS", 20), envInt("SIM_TRIALS", 100)
	ctx := context.Background()
	start := time.Now()
	tn := newTestNet(t, nodes)
	t.Logf("%d-node DHT up in %v", nodes, time.Since(start).Round(time.Millisecond))

	type exit struct {
		n    *Node
		conn *countingConn
		key  ed25519.PrivateKey
		addr netip.AddrPort
	}
	exits := make([]exit, exitCount)
	for i := range exits {
		ip := ipf("127.%d.%d.1", 100+i/200, i%200)
		cc := &countingConn{PacketConn: listenUDP(t, ip)}
		_, key, _ := ed25519.GenerateKey(nil)
		exits[i] = exit{startNode(t, testConfig(cc, tn.bootstrap())), cc, key,
			netip.AddrPortFrom(netip.MustParseAddr(ip), 7000)}
	}
	for _, e := range exits {
		waitReady(t, e.n)
	}
	var annPkts, annBytes, pubPkts, pubBytes []int64
	value := make([]byte, 600) // about a compact descriptor
	for i, e := range exits {
		b := e.conn.snapshot()
		if err := e.n.Announce(ctx, 7000); err != nil {
			t.Errorf("exit %d announce: %v", i, err)
		}
		a := e.conn.snapshot()
		if err := e.n.Publish(ctx, e.key, []byte(ExitSalt), value, 1); err != nil {
			t.Errorf("exit %d publish: %v", i, err)
		}
		p := e.conn.snapshot()
		annPkts = append(annPkts, a[0]-b[0]+a[2]-b[2])
		annBytes = append(annBytes, a[1]-b[1]+a[3]-b[3])
		pubPkts = append(pubPkts, p[0]-a[0]+p[2]-a[2])
		pubBytes = append(pubBytes, p[1]-a[1]+p[3]-a[3])
	}
	med := func(xs []int64) int64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	t.Logf("announce: median %d packets, %d bytes (sent+received)", med(annPkts), med(annBytes))
	t.Logf("publish (600-byte value): median %d packets, %d bytes (sent+received)", med(pubPkts), med(pubBytes))
	perHour := 4*med(annBytes) + med(pubBytes)*60/52 // announce every 15 min, republish every ~52
	t.Logf("exit upkeep from announces and publishes: %d bytes/hour = %.2f bytes/s", perHour, float64(perHour)/3600)

	// Idle table upkeep of one exit over a short window.
	b := exits[0].conn.snapshot()
	idle := 90 * time.Second
	time.Sleep(idle) // an experiment measuring idle traffic over wall time, not synchronisation
	a := exits[0].conn.snapshot()
	t.Logf("idle table upkeep: %.1f bytes/s over %v", float64(a[1]-b[1]+a[3]-b[3])/idle.Seconds(), idle)

	var cold, warm []time.Duration
	okCold, okAll, found := 0, 0, 0
	for i := 0; i < trials; i++ {
		ip := ipf("127.%d.%d.%d", 200+i/250, i%250, 1)
		t0 := time.Now()
		c := startNode(t, testConfig(listenUDP(t, ip), tn.bootstrap()))
		waitReady(t, c)
		got, err := c.Lookup(ctx, time.Now())
		d := time.Since(t0)
		n := 0
		for _, e := range exits {
			if slices.Contains(got, e.addr) {
				n++
			}
		}
		found += n
		if err == nil && n > 0 {
			okCold++
			cold = append(cold, d)
		}
		if n == len(exits) {
			okAll++
		}
		t1 := time.Now()
		if got, err := c.Lookup(ctx, time.Now()); err == nil && len(got) > 0 {
			warm = append(warm, time.Since(t1))
		}
		c.Close()
		<-c.done
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		s := slices.Clone(ds)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[int(float64(len(s)-1)*p)].Round(time.Millisecond)
	}
	t.Logf("cold start (new node: bootstrap + lookup), %d trials: %d found at least one exit (%.0f%%), %d found all %d; exits found %.1f%%",
		trials, okCold, 100*float64(okCold)/float64(trials), okAll, len(exits), 100*float64(found)/float64(trials*len(exits)))
	t.Logf("cold start time: median %v, p90 %v, max %v", pct(cold, .5), pct(cold, .9), pct(cold, 1))
	t.Logf("warm lookup time: median %v, p90 %v, max %v", pct(warm, .5), pct(warm, .9), pct(warm, 1))
}
