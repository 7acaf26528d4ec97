package testnet

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery/mainline"
)

// DHT is a Mainline DHT of in-process nodes on loopback.
type DHT struct {
	Addrs []string // every node's UDP address
	Nodes []*mainline.Node
}

// Bootstrap returns a few node addresses to start from.
func (d *DHT) Bootstrap() []string { return d.Addrs[:4] }

// DHTNodeConfig is a node config for tests: its own unlimited send limiter
// (by default all nodes of a process would share one of 25 packets/s),
// loopback allowed, short operations, never the public routers.
func DHTNodeConfig(conn net.PacketConn, bootstrap []string) mainline.Config {
	if len(bootstrap) == 0 {
		bootstrap = []string{"127.0.0.1:1"} // nothing listens there
	}
	return mainline.Config{Conn: conn, Bootstrap: bootstrap, AllowPrivate: true,
		SendLimiter: rate.NewLimiter(rate.Inf, 0), OpTimeout: 10 * time.Second}
}

// StartDHT runs size nodes on 127.0.0.1, each bootstrapped from its
// neighbours and the first three, and waits until all are ready.
func StartDHT(t testing.TB, size int) *DHT {
	t.Helper()
	d := &DHT{}
	conns := make([]net.PacketConn, size)
	for i := range conns {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		d.Addrs = append(d.Addrs, c.LocalAddr().String())
	}
	for i, c := range conns {
		bs := []string{d.Addrs[(i+1)%size], d.Addrs[(i+size-1)%size]}
		for j := 0; j < 3 && j < size; j++ {
			if j != i {
				bs = append(bs, d.Addrs[j])
			}
		}
		d.Nodes = append(d.Nodes, RunDHTNode(t, DHTNodeConfig(c, bs)))
	}
	deadline := time.After(30 * time.Second)
	for _, n := range d.Nodes {
		select {
		case <-n.Ready():
		case <-deadline:
			t.Fatal("dht nodes not ready in 30s")
		}
	}
	return d
}

// RunDHTNode runs a node until the test ends.
func RunDHTNode(t testing.TB, cfg mainline.Config) *mainline.Node {
	t.Helper()
	n, err := mainline.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); n.Run(context.Background()) }()
	t.Cleanup(func() { n.Close(); <-done })
	return n
}

func netipAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
