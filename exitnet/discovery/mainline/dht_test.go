package mainline

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/time/rate"
)

type testExit struct {
	node  *Node
	key   ed25519.PrivateKey
	port  int
	addr  netip.AddrPort // announced address
	value []byte
	seq   int64
}

// TestDHT runs the whole story on one 50-node loopback DHT: exits announce and publish, a client
// finds them, an exit moves, forged items and bogus announces are ignored, the table survives a
// restart.
func TestDHT(t *testing.T) {
	if testing.Short() {
		t.Skip("50-node DHT")
	}
	tn := newTestNet(t, 50)
	ctx := context.Background()
	salt := []byte(ExitSalt)

	exits := make([]*testExit, 3)
	for i := range exits {
		ip := ipf("127.%d.0.1", 10+i)
		n := startNode(t, testConfig(listenUDP(t, ip), tn.bootstrap()))
		_, key, _ := ed25519.GenerateKey(nil)
		port := 7000 + i
		exits[i] = &testExit{node: n, key: key, port: port,
			addr:  netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)),
			value: []byte(ipf("exit %d at %s", i, ip)), seq: 100}
	}
	for _, e := range exits {
		waitReady(t, e.node)
	}
	parallel(len(exits), len(exits), func(i int) {
		e := exits[i]
		if err := e.node.Announce(ctx, e.port); err != nil {
			t.Errorf("exit %d announce: %v", i, err)
		}
		if err := e.node.Publish(ctx, e.key, salt, e.value, e.seq); err != nil {
			t.Errorf("exit %d publish: %v", i, err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	for i, e := range exits {
		st := e.node.Stats()
		if st.Announces != 1 || st.Publishes != 1 || st.LastPublish.IsZero() {
			t.Errorf("exit %d stats: %+v", i, st)
		}
	}

	client := startNode(t, testConfig(listenUDP(t, "127.20.0.1"), tn.bootstrap()))
	waitReady(t, client)

	lookupAll := func(t *testing.T, n *Node) []netip.AddrPort {
		t.Helper()
		got, err := n.Lookup(ctx, time.Now())
		if err != nil {
			t.Fatalf("lookup: %v", err)
		}
		for i, e := range exits {
			if !slices.Contains(got, e.addr) {
				t.Errorf("lookup missed exit %d (%v); got %v", i, e.addr, got)
			}
		}
		return got
	}

	t.Run("LookupFindsAllExits", func(t *testing.T) {
		got := lookupAll(t, client)
		if len(got) != len(exits) {
			t.Errorf("lookup returned %v, want only the %d exits", got, len(exits))
		}
		if st := client.Stats(); st.Lookups != 1 || st.LastLookup.IsZero() || st.Nodes == 0 {
			t.Errorf("client stats: %+v", st)
		}
	})

	t.Run("GetByKey", func(t *testing.T) {
		for i, e := range exits {
			v, seq, err := client.Get(ctx, e.key.Public().(ed25519.PublicKey), salt)
			if err != nil || !bytes.Equal(v, e.value) || seq != e.seq {
				t.Errorf("exit %d: get = %q, %d, %v; want %q, %d", i, v, seq, err, e.value, e.seq)
			}
		}
		_, other, _ := ed25519.GenerateKey(nil)
		if _, _, err := client.Get(ctx, other.Public().(ed25519.PublicKey), salt); !errors.Is(err, ErrNotFound) {
			t.Errorf("get of an unpublished key: %v, want ErrNotFound", err)
		}
	})

	t.Run("ExitMovesAndIsFoundByKey", func(t *testing.T) {
		e := exits[0]
		e.node.Close()
		<-e.node.done
		moved := startNode(t, testConfig(listenUDP(t, "127.13.0.1"), tn.bootstrap()))
		waitReady(t, moved)
		// Publishing the old seq with a new value is refused: the DHT holds seq 100.
		err := moved.Publish(ctx, e.key, salt, []byte("moved"), e.seq)
		var se *SeqError
		if !errors.As(err, &se) || se.Highest != e.seq {
			t.Errorf("publish of a stale seq: %v, want SeqError with Highest %d", err, e.seq)
		}
		e.node, e.value, e.seq = moved, []byte("exit 0 moved to 127.13.0.1"), 200
		if err := moved.Publish(ctx, e.key, salt, e.value, e.seq); err != nil {
			t.Fatalf("publish from the new address: %v", err)
		}
		v, seq, err := client.Get(ctx, e.key.Public().(ed25519.PublicKey), salt)
		if err != nil || !bytes.Equal(v, e.value) || seq != e.seq {
			t.Errorf("get after move = %q, %d, %v; want %q, %d", v, seq, err, e.value, e.seq)
		}
		if err := moved.Announce(ctx, 7000); err != nil {
			t.Fatalf("announce from the new address: %v", err)
		}
		e.addr = netip.MustParseAddrPort("127.13.0.1:7000")
		got, err := client.Lookup(ctx, time.Now())
		if err != nil || !slices.Contains(got, e.addr) {
			t.Errorf("lookup after move = %v, %v; want %v in it", got, err, e.addr)
		}
	})

	t.Run("ForgedItemsIgnored", func(t *testing.T) {
		e := exits[1]
		forgers, target := startForgers(t, tn, e.key, salt, e.seq)
		// The client's ID is next to the target too, so the forgers fit in its table (in a
		// bucket of their own) once they answered a ping, and its get traversal asks them.
		cfg := testConfig(listenUDP(t, "127.21.0.1"), tn.bootstrap())
		cfg.StateFile = t.TempDir() + "/state"
		id := target
		id[19] ^= 0x80
		if err := saveState(cfg.StateFile, state{ID: id}); err != nil {
			t.Fatal(err)
		}
		c := startNode(t, cfg)
		waitReady(t, c)
		for _, f := range forgers {
			if r := c.srv.Load().Ping(net.UDPAddrFromAddrPort(netip.MustParseAddrPort(f))); r.Err != nil {
				t.Fatalf("ping forger: %v", r.Err)
			}
		}
		v, seq, err := c.Get(ctx, e.key.Public().(ed25519.PublicKey), salt)
		if err != nil || !bytes.Equal(v, e.value) || seq != e.seq {
			t.Errorf("get with forgers = %q, %d, %v; want %q, %d", v, seq, err, e.value, e.seq)
		}
		rej := c.Stats().ItemsRejected
		if rej.Signature == 0 || rej.Oversize == 0 || rej.Malformed == 0 || rej.WrongKey == 0 || rej.Encoding == 0 {
			t.Errorf("rejections %+v: want each reason counted", rej)
		}
	})

	t.Run("BogusAnnouncesCapped", func(t *testing.T) {
		start := time.Now()
		accepted := bogusAnnounce(t, tn, 100)
		t.Logf("100 bogus addresses announced to 8 nodes: %d of 800 accepted in %v", accepted, time.Since(start).Round(time.Millisecond))
		if accepted < 400 {
			t.Fatalf("only %d bogus announces accepted", accepted)
		}
		before := client.Stats().CandidatesDropped
		start = time.Now()
		got := lookupAll(t, client)
		t.Logf("lookup with the flood took %v, returned %d", time.Since(start).Round(time.Millisecond), len(got))
		bogus := 0
		for _, ap := range got {
			if ap.Addr().As4()[1] == 66 || ap.Addr().As4()[1] == 67 {
				bogus++
			}
		}
		if bogus > 2*DefaultCandidatesPerNet {
			t.Errorf("lookup returned %d bogus candidates from 2 /24s, want at most %d", bogus, 2*DefaultCandidatesPerNet)
		}
		if after := client.Stats().CandidatesDropped; after.PerNet <= before.PerNet {
			t.Errorf("no candidate dropped by the /24 cap: %+v", after)
		}
	})

	t.Run("StateSavedAndReloaded", func(t *testing.T) {
		path := t.TempDir() + "/dht.state"
		cfg := testConfig(listenUDP(t, "127.30.0.1"), tn.bootstrap())
		cfg.StateFile = path
		first := startNode(t, cfg)
		waitReady(t, first)
		lookupAll(t, first)
		id := first.srv.Load().ID()
		first.Close()
		<-first.done
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		st, err := parseState(b)
		if err != nil || st.ID != id || len(st.Nodes) < readyNodes {
			t.Fatalf("state file: %d nodes, id %x (want %x), err %v", len(st.Nodes), st.ID, id, err)
		}
		// No reachable bootstrap: the saved table alone must do.
		cfg = testConfig(listenUDP(t, "127.30.0.1"), nil)
		cfg.StateFile = path
		second := startNode(t, cfg)
		select {
		case <-second.Ready():
		case <-time.After(time.Second):
			t.Fatal("a node with a saved table is not ready within 1s")
		}
		if second.srv.Load().ID() != id {
			t.Errorf("node ID not kept across restart")
		}
		lookupAll(t, second)
	})
}

// startForgers starts DHT nodes next to the target of (key, salt) that answer get queries with
// forged or stale items, one kind each, and returns their addresses and the target.
func startForgers(t *testing.T, tn *testNet, key ed25519.PrivateKey, salt []byte, seq int64) ([]string, [20]byte) {
	var pub [32]byte
	copy(pub[:], key.Public().(ed25519.PublicKey))
	target := bep44.MakeMutableTarget(pub, salt)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	var otherPub [32]byte
	copy(otherPub[:], otherKey.Public().(ed25519.PublicKey))
	sign := func(k ed25519.PrivateKey, v []byte, seq int64) (s [64]byte) {
		copy(s[:], bep44.Sign(k, salt, seq, v))
		return
	}
	i64 := func(v int64) *int64 { return &v }
	str := func(s string) []byte { return bencode.MustMarshal(s) }
	big := str(string(bytes.Repeat([]byte("x"), 1200)))
	var randSig [64]byte
	rand.Read(randSig[:])
	forged := []krpc.Bep44Return{
		{V: str("forged"), K: pub, Sig: randSig, Seq: i64(seq + 50)},                                  // bad signature
		{V: str("old"), K: pub, Sig: sign(key, str("old"), seq-1), Seq: i64(seq - 1)},                 // lower seq, genuine
		{V: big, K: pub, Sig: sign(key, big, seq+50), Seq: i64(seq + 50)},                             // oversize
		{V: str("noseq"), K: pub, Sig: sign(key, str("noseq"), seq+50)},                               // no seq
		{V: str("other"), K: otherPub, Sig: sign(otherKey, str("other"), seq+50), Seq: i64(seq + 50)}, // wrong key
		{V: []byte("i42e"), K: pub, Sig: sign(key, []byte("i42e"), seq+60), Seq: i64(seq + 60)},       // not a string
	}
	var addrs []string
	for i, item := range forged {
		conn := listenUDP(t, ipf("127.40.0.%d", i+1))
		id := krpc.ID(target)
		id[19] ^= byte(i + 1)
		sc := dht.NewDefaultServerConfig()
		sc.Conn = conn
		sc.NodeId = id
		sc.StartingNodes = func() ([]dht.Addr, error) { return nil, errors.New("none") }
		sc.SendLimiter = rate.NewLimiter(rate.Inf, 0)
		sc.Logger = bridgeLogger(nil2discard())
		sc.OnQuery = func(q *krpc.Msg, source net.Addr) bool {
			if q.Q != "get" {
				return true
			}
			tok := "forgertoken"
			r := krpc.Return{ID: id, Token: &tok, Bep44Return: item}
			b := bencode.MustMarshal(krpc.Msg{T: q.T, Y: "r", R: &r})
			conn.WriteTo(b, source)
			return false
		}
		srv, err := dht.NewServer(sc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close(); conn.Close() })
		addrs = append(addrs, conn.LocalAddr().String())
	}
	return addrs, target
}

// bogusAnnounce announces count addresses that speak nothing (half in 127.66.0.0/24, half in
// 127.67.0.0/24) to the nodes closest to today's rendezvous hash, and returns how many announces
// were accepted. (UDP on a loaded machine loses a few; each query is tried three times.)
func bogusAnnounce(t *testing.T, tn *testNet, count int) int {
	hash := RendezvousHash(time.Now())
	closest := tn.closest(hash, 8)
	var accepted atomic.Int64
	parallel(count, 10, func(i int) {
		conn := listenUDP(t, ipf("127.%d.0.%d", 66+i%2, 1+i/2))
		sc := dht.NewDefaultServerConfig()
		sc.Conn = conn
		sc.Passive = true
		sc.StartingNodes = func() ([]dht.Addr, error) { return nil, errors.New("none") }
		sc.SendLimiter = rate.NewLimiter(rate.Inf, 0)
		sc.Logger = bridgeLogger(nil2discard())
		sc.QueryResendDelay = func() time.Duration { return time.Second }
		srv, err := dht.NewServer(sc)
		if err != nil {
			t.Error(err)
			return
		}
		defer func() { srv.Close(); conn.Close() }()
		port := 20000 + i
		for _, ap := range closest {
			addr := dht.NewAddr(net.UDPAddrFromAddrPort(ap))
			res := srv.Query(context.Background(), addr, "get_peers", dht.QueryInput{
				MsgArgs: krpc.MsgArgs{InfoHash: hash}, NumTries: 3})
			if res.Err != nil || res.Reply.R == nil || res.Reply.R.Token == nil {
				continue
			}
			res = srv.Query(context.Background(), addr, "announce_peer", dht.QueryInput{
				MsgArgs: krpc.MsgArgs{InfoHash: hash, Port: &port, Token: *res.Reply.R.Token}, NumTries: 3})
			if res.ToError() == nil {
				accepted.Add(1)
			}
		}
	})
	return int(accepted.Load())
}
