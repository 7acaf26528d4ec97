package testnet

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	"golang.org/x/time/rate"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/discovery/mainline"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// waitLong is WaitFor with a longer bound, for work that crosses the DHT.
func waitLong(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
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

// startDHTExit runs an exit on ip that publishes itself on d, its DHT
// node on the same address as its link.
func startDHTExit(t testing.TB, d *DHT, id *link.Identity, ip, seqFile string) *ExitNode {
	t.Helper()
	conn, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := exit.Config{Link: link.Config{Identity: id},
		DHT: &exit.DHTConfig{Node: DHTNodeConfig(conn, d.Bootstrap()), SeqFile: seqFile}}
	n := StartExitNode(t, cfg, net.JoinHostPort(ip, "0"))
	waitLong(t, "the exit announced and published", 30*time.Second, func() bool {
		s, _ := n.Exit.DHT()
		return !s.LastAnnounce.IsZero() && !s.LastPublish.IsZero()
	})
	return n
}

// dhtClient runs a client that knows no exit and has mDNS off: it has only
// the DHT.
func dhtClient(t testing.TB, d *DHT, ip string, want int, exits ...link.ExitAddr) *client.Client {
	t.Helper()
	id, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{Identity: id, Exits: exits, StateDir: t.TempDir(), SOCKS: "127.0.0.1:0", HTTP: "off", Forward: "off",
		DHT: &client.DHT{Bootstrap: d.Bootstrap(), Listen: net.JoinHostPort(ip, "0"), AllowPrivate: true, Want: want,
			Every: time.Second, ProbeTimeout: 2 * time.Second, SendLimiter: rate.NewLimiter(rate.Inf, 0), OpTimeout: 10 * time.Second},
		Tuning: client.Tuning{DialWait: 2 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); serve(t, "client", func() error { return c.Run(ctx) }) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func dhtFound(c *client.Client) map[link.PeerID]string {
	out := map[link.PeerID]string{}
	for _, e := range c.Pool().Exits() {
		if e.Source == discovery.SourceDHT {
			out[e.Exit.ID] = e.Exit.Addr
		}
	}
	return out
}

// TestDHTDiscovery: on a 50-node loopback DHT three exits publish; a
// client that was given no exit, with mDNS off, finds all three, links to
// one, carries a flow, moves its DHT traffic behind the exit, fails over
// when the active exit dies, and finds that exit again by its peer ID when
// it comes back on another address. An item that replays another exit's
// descriptor under a forger's key is ignored.
func TestDHTDiscovery(t *testing.T) {
	if testing.Short() {
		t.Skip("50-node DHT")
	}
	start := time.Now()
	d := StartDHT(t, 50)
	t.Logf("50-node dht up in %v", time.Since(start).Round(time.Millisecond))
	app := StartTarget(t, "127.0.0.1:0", Echo)

	ids := make([]*link.Identity, 3)
	seqs := make([]string, 3)
	exits := make([]*ExitNode, 3)
	var wg sync.WaitGroup
	for i := range exits {
		ids[i], _ = link.NewIdentity()
		seqs[i] = filepath.Join(t.TempDir(), "seq")
		wg.Go(func() { exits[i] = startDHTExit(t, d, ids[i], fmt.Sprintf("127.%d.0.1", 10+i), seqs[i]) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("3 exits published in %v", time.Since(start).Round(time.Millisecond))

	// Want 4 of 3: the client keeps its node running, so that it moves
	// behind the exit once a link is up.
	t0 := time.Now()
	c := dhtClient(t, d, "127.20.0.1", 4)
	waitLong(t, "the client to find all 3 exits", 30*time.Second, func() bool { return len(dhtFound(c)) == 3 })
	t.Logf("all 3 exits found in %v", time.Since(t0).Round(time.Millisecond))
	for i, e := range exits {
		if got := dhtFound(c)[e.Addr.ID]; got != e.Addr.Addr {
			t.Fatalf("exit %d found at %q, want %s", i, got, e.Addr.Addr)
		}
	}
	echoVia(t, c.Pool(), app.Addr)

	// Once a link is up, the node runs through the exit: its own socket
	// goes quiet while lookups go on.
	waitLong(t, "the dht node behind the exit", 30*time.Second, func() bool {
		s := c.Stats().DHT
		return s.Path == client.DHTExit && s.ExitSent > 0 && !s.LastLookup.IsZero()
	})
	before := c.Stats().DHT
	waitLong(t, "a lookup through the exit", 30*time.Second, func() bool {
		s := c.Stats().DHT
		return s.LastLookup.After(before.LastLookup) && s.ExitReceived > before.ExitReceived
	})
	after := c.Stats().DHT
	if after.DirectSent != before.DirectSent || after.DirectReceived != before.DirectReceived {
		t.Fatalf("the client's own dht socket carried datagrams after the move: %+v then %+v", before, after)
	}
	t.Logf("dht datagrams: direct %d sent / %d received before the link; through the exit %d / %d",
		after.DirectSent, after.DirectReceived, after.ExitSent, after.ExitReceived)

	// Failover.
	active := activeExit(c.Pool())
	var dead int
	for i, e := range exits {
		if e.Addr.ID == active {
			dead = i
		}
	}
	exits[dead].Stop()
	waitLong(t, "failover to another exit", 20*time.Second, func() bool {
		st := c.Pool().Status()
		return st.State == "up" && st.Exit.ID != active
	})
	echoVia(t, c.Pool(), app.Addr)

	// The dead exit comes back on another address, with its identity:
	// the client finds it by its peer ID.
	moved := startDHTExit(t, d, ids[dead], "127.13.0.1", seqs[dead])
	waitLong(t, "the moved exit found by peer id", 30*time.Second, func() bool {
		return dhtFound(c)[active] == moved.Addr.Addr
	})

	// A forger publishes, under its own key, the descriptor of a real
	// exit: a client that looks for the forger's ID finds nothing usable.
	_, forger, _ := ed25519.GenerateKey(nil)
	fconn, _ := net.ListenPacket("udp4", "127.21.0.1:0")
	fnode := RunDHTNode(t, DHTNodeConfig(fconn, d.Bootstrap()))
	real, err := exits[(dead+1)%3].Exit.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	v, _ := real.DHTValue()
	if err := fnode.Publish(t.Context(), forger, []byte(mainline.ExitSalt), v, time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	forgerID := link.PeerID(forger.Public().(ed25519.PublicKey))
	c2 := dhtClient(t, d, "127.22.0.1", 1, link.ExitAddr{ID: forgerID})
	waitLong(t, "the forger's item looked up", 30*time.Second, func() bool { return c2.Stats().DHT.ItemLookups >= 2 })
	for _, e := range c2.Pool().Exits() {
		if e.Exit.ID == forgerID {
			t.Fatalf("the forger's item gave the client an exit: %+v", e)
		}
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// TestDHTBogusAnnounces: 100 addresses that do not speak swarmvpn (half
// refuse connections, half accept and stay silent) are announced on the
// rendezvous hash beside one real exit. The client still finds the exit,
// and the bogus candidates cost it bounded time.
func TestDHTBogusAnnounces(t *testing.T) {
	if testing.Short() {
		t.Skip("50-node DHT")
	}
	d := StartDHT(t, 50)
	id, _ := link.NewIdentity()
	real := startDHTExit(t, d, id, "127.10.0.1", "")
	start := time.Now()
	accepted := bogusAnnounce(t, d, 100)
	t.Logf("100 bogus addresses announced to the 50 nodes: %d announces accepted in %v", accepted, time.Since(start).Round(time.Millisecond))

	t0 := time.Now()
	c := dhtClient(t, d, "127.20.0.1", 1)
	waitLong(t, "the real exit found among bogus ones", 45*time.Second, func() bool {
		_, ok := dhtFound(c)[real.Addr.ID]
		return ok
	})
	s := c.Stats().DHT
	t.Logf("real exit found in %v; %d candidates probed, %d dropped", time.Since(t0).Round(time.Millisecond), s.Probes, s.ProbeFailures)
	if len(dhtFound(c)) != 1 {
		t.Fatalf("bogus exits in the pool: %v", dhtFound(c))
	}
}

// bogusAnnounce announces count addresses in 10 /24s to every node of d:
// even ones at a listener that accepts and never answers, odd ones at a
// port where nothing listens. It returns how many announces were accepted.
func bogusAnnounce(t *testing.T, d *DHT, count int) int {
	hash := mainline.RendezvousHash(time.Now())
	var accepted atomic.Int64
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for i := range count {
		ip := fmt.Sprintf("127.%d.0.%d", 60+i%10, 1+i/10)
		port := 1
		if i%2 == 0 {
			ln, err := net.Listen("tcp4", net.JoinHostPort(ip, "0"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			port = ln.Addr().(*net.TCPAddr).Port
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
			if err != nil {
				t.Error(err)
				return
			}
			sc := dht.NewDefaultServerConfig()
			sc.Conn = conn
			sc.Passive = true
			sc.NoSecurity = true
			sc.StartingNodes = func() ([]dht.Addr, error) { return nil, errors.New("none") }
			sc.SendLimiter = rate.NewLimiter(rate.Inf, 0)
			sc.QueryResendDelay = func() time.Duration { return time.Second }
			srv, err := dht.NewServer(sc)
			if err != nil {
				t.Error(err)
				return
			}
			defer func() { srv.Close(); conn.Close() }()
			for _, a := range d.Addrs {
				addr := dht.NewAddr(net.UDPAddrFromAddrPort(netipAddrPort(a)))
				res := srv.Query(context.Background(), addr, "get_peers", dht.QueryInput{
					MsgArgs: krpc.MsgArgs{InfoHash: hash}, NumTries: 2})
				if res.Err != nil || res.Reply.R == nil || res.Reply.R.Token == nil {
					continue
				}
				res = srv.Query(context.Background(), addr, "announce_peer", dht.QueryInput{
					MsgArgs: krpc.MsgArgs{InfoHash: hash, Port: &port, Token: *res.Reply.R.Token}, NumTries: 2})
				if res.ToError() == nil {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(accepted.Load())
}
