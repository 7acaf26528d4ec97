package mainline

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
)

func TestRendezvousHash(t *testing.T) {
	a := RendezvousHash(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	b := RendezvousHash(time.Date(2026, 3, 1, 23, 59, 59, 0, time.UTC))
	c := RendezvousHash(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC))
	// 2026-03-02 01:00 in UTC+2 is 2026-03-01 23:00 UTC.
	d := RendezvousHash(time.Date(2026, 3, 2, 1, 0, 0, 0, time.FixedZone("x", 2*3600)))
	if a != b || a == c || a != d {
		t.Errorf("hash must change exactly at 00:00 UTC: %x %x %x %x", a, b, c, d)
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr         string
		allowPrivate bool
		want         dropReason
	}{
		{"8.8.8.8:53", false, ""},
		{"[2001:4860::1]:443", false, ""},
		{"127.0.0.1:1", false, dropForbidden},
		{"127.0.0.1:1", true, ""},
		{"10.1.2.3:1", false, dropForbidden},
		{"100.64.0.1:1", false, dropForbidden},
		{"169.254.1.1:1", false, dropForbidden},
		{"[::ffff:192.168.1.1]:1", false, dropForbidden},
		{"[fd00::1]:1", false, dropForbidden},
		{"[fd00::1]:1", true, ""},
		{"224.0.0.1:1", true, dropForbidden},
		{"255.255.255.255:1", true, dropForbidden},
		{"0.0.0.0:1", true, dropForbidden},
		{"[::]:1", true, dropForbidden},
		{"8.8.8.8:0", false, dropInvalid},
		{"198.18.0.1:1", false, dropForbidden},
		{"198.18.0.1:1", true, ""},
		{"203.0.113.1:1", false, dropForbidden},
		{"[2001:db8::1]:1", false, dropForbidden},
		{"[fec0::1]:1", false, dropForbidden},
		{"[fec0::1]:1", true, ""},
		{"[::1.2.3.4]:1", false, dropForbidden},
		{"[::1.2.3.4]:1", true, dropForbidden},
		{"240.0.0.1:1", true, dropForbidden},
		{"[ff02::1]:1", true, dropForbidden},
		{"[fe80::1%eth0]:1", true, dropInvalid},
	} {
		if got := checkAddr(netip.MustParseAddrPort(tc.addr), tc.allowPrivate); got != tc.want {
			t.Errorf("checkAddr(%s, %v) = %q, want %q", tc.addr, tc.allowPrivate, got, tc.want)
		}
	}
}

func peersOf(addrs ...string) dht.PeersValues {
	var pv dht.PeersValues
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		pv.Peers = append(pv.Peers, krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())})
	}
	return pv
}

func TestCollectorCaps(t *testing.T) {
	c := newCollector()
	c.add(peersOf("1.1.1.1:1", "1.1.1.2:1", "1.1.1.3:1", "2.2.2.2:2", "10.0.0.1:1", "1.1.1.1:1"))
	c.add(peersOf("1.1.1.3:1", "[2001:db9::1]:5", "[2001:db9::2]:5", "[2001:db9::3]:5", "9.9.9.9:0"))
	got, drops := c.result(false, 2, 4)
	// 1.1.1.3 was reported twice: it comes first and takes one of the /24's two places.
	if len(got) != 4 || got[0] != netip.MustParseAddrPort("1.1.1.3:1") {
		t.Errorf("result %v", got)
	}
	// Seven acceptable, four returned: three dropped by the per-net cap or the limit, in an order
	// that depends on the shuffle.
	if drops.Forbidden != 1 || drops.Invalid != 1 || drops.PerNet < 1 || drops.PerNet+drops.OverLimit != 3 {
		t.Errorf("drops %+v", drops)
	}
	perNet := map[netip.Prefix]int{}
	for _, ap := range got {
		perNet[netKey(ap.Addr())]++
	}
	for k, n := range perNet {
		if n > 2 {
			t.Errorf("%d candidates in %v", n, k)
		}
	}
}

func TestCollectorBounds(t *testing.T) {
	c := newCollector()
	for i := 0; i < 40; i++ {
		var pv dht.PeersValues
		for j := 0; j < 250; j++ {
			pv.Peers = append(pv.Peers, krpc.NodeAddr{IP: []byte{11, byte(i), byte(j), 1}, Port: 1})
		}
		c.add(pv)
	}
	if len(c.support) > maxSeenCandidates {
		t.Errorf("collector kept %d addresses, at most %d", len(c.support), maxSeenCandidates)
	}
	got, drops := c.result(false, 2, DefaultMaxCandidates)
	if len(got) != DefaultMaxCandidates || drops.OverLimit == 0 {
		t.Errorf("got %d, drops %+v", len(got), drops)
	}
}

func TestPeerStoreBounds(t *testing.T) {
	p := newPeerStore()
	clock := time.Unix(1e9, 0)
	p.now = func() time.Time { return clock }
	var ih [20]byte
	for i := 0; i < 10; i++ {
		p.AddPeer(ih, krpc.NodeAddr{IP: []byte{1, 2, 3, 4}, Port: 1000 + i})
	}
	if n := len(p.GetPeers(ih)); n != maxPortsPerIP {
		t.Errorf("%d ports from one IP, want %d", n, maxPortsPerIP)
	}
	for i := 0; i < 1000; i++ {
		p.AddPeer(ih, krpc.NodeAddr{IP: []byte{5, 0, byte(i % 2), byte(i)}, Port: 1 + i})
	}
	p.AddPeer(ih, krpc.NodeAddr{IP: []byte{9, 9, 9, 9}, Port: 9})
	if n := len(p.hashes[ih]); n > maxPeersPerHash {
		t.Errorf("%d peers stored, at most %d", n, maxPeersPerHash)
	}
	got := p.GetPeers(ih)
	if len(got) != maxPeersPerReply {
		t.Errorf("%d peers in a reply, want %d", len(got), maxPeersPerReply)
	}
	found := false
	for _, na := range got {
		found = found || na.IP.Equal([]byte{9, 9, 9, 9})
	}
	if !found {
		t.Errorf("the one peer of its /24 is missing from the reply")
	}
	clock = clock.Add(peerTTL + time.Minute)
	if n := len(p.GetPeers(ih)); n != 0 {
		t.Errorf("%d peers after expiry", n)
	}
	for i := 0; i < 2*maxInfoHashes; i++ {
		p.AddPeer([20]byte{byte(i), byte(i >> 8), 1}, krpc.NodeAddr{IP: []byte{1, 1, 1, 1}, Port: 1})
	}
	if len(p.hashes) > maxInfoHashes {
		t.Errorf("%d info-hashes stored, at most %d", len(p.hashes), maxInfoHashes)
	}
}

func TestDecodeByteString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"0:", "", true},
		{"5:hello", "hello", true},
		{"5:hell", "", false},
		{"5:hello!", "", false},
		{"05:hello", "", false},
		{"i42e", "", false},
		{":x", "", false},
		{"-1:", "", false},
		{"99999:x", "", false},
		{"l1:ae", "", false},
	} {
		got, err := decodeByteString([]byte(tc.in))
		if (err == nil) != tc.ok || string(got) != tc.want {
			t.Errorf("decodeByteString(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func FuzzDecodeByteString(f *testing.F) {
	f.Add([]byte("5:hello"))
	f.Add([]byte("0:"))
	f.Add([]byte("i1e"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeByteString(b)
		if err != nil {
			return
		}
		if len(v) >= len(b) || !bytes.HasSuffix(b, v) {
			t.Fatalf("decoded %q from %q", v, b)
		}
	})
}

func TestStateRoundTrip(t *testing.T) {
	st := state{ID: [20]byte{1, 2, 3}}
	st.Nodes = []stateNode{
		{ID: [20]byte{9}, Addr: netip.MustParseAddrPort("1.2.3.4:6881")},
		{ID: [20]byte{8}, Addr: netip.MustParseAddrPort("[2001:db8::1]:25401")},
	}
	got, err := parseState(marshalState(st))
	if err != nil || got.ID != st.ID || len(got.Nodes) != 2 || got.Nodes[0] != st.Nodes[0] || got.Nodes[1] != st.Nodes[1] {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, []byte("SVDHTst1"), append(marshalState(st), 0), marshalState(st)[:40]} {
		if _, err := parseState(bad); !errors.Is(err, errBadState) {
			t.Errorf("parseState(%q) = %v, want errBadState", bad, err)
		}
	}
	path := t.TempDir() + "/s"
	if err := saveState(path, st); err != nil {
		t.Fatal(err)
	}
	if got, err := loadState(path); err != nil || len(got.Nodes) != 2 {
		t.Errorf("load: %+v %v", got, err)
	}
	if got, err := loadState(path + ".missing"); err != nil || len(got.Nodes) != 0 {
		t.Errorf("missing file: %+v %v", got, err)
	}
}

func FuzzParseState(f *testing.F) {
	st := state{ID: [20]byte{1}, Nodes: []stateNode{
		{ID: [20]byte{2}, Addr: netip.MustParseAddrPort("1.2.3.4:5")},
		{ID: [20]byte{3}, Addr: netip.MustParseAddrPort("[::1]:5")},
	}}
	f.Add(marshalState(st))
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseState(b)
		if err != nil {
			return
		}
		if len(st.Nodes) > maxStateNodes {
			t.Fatalf("%d nodes", len(st.Nodes))
		}
		again, err := parseState(marshalState(st))
		if err != nil || again.ID != st.ID || len(again.Nodes) != len(st.Nodes) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{Listen: "nonsense", Bootstrap: []string{"127.0.0.1:1"}},
		{Bootstrap: []string{"router.example"}},
		{Bootstrap: []string{"host:0"}},
		{Bootstrap: []string{"127.0.0.1:1"}, OpTimeout: -1},
		{Bootstrap: []string{"127.0.0.1:1"}, MaxCandidates: 100000},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// fakeTarget records a Publisher's calls.
type fakeTarget struct {
	mu        sync.Mutex
	announces []time.Time
	publishes []fakePublish
	highest   int64 // the "DHT"'s highest seq; Publish below it fails
}

type fakePublish struct {
	at    time.Time
	value string
	seq   int64
}

func (f *fakeTarget) Announce(ctx context.Context, port int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announces = append(f.announces, time.Now())
	return nil
}

func (f *fakeTarget) Publish(ctx context.Context, key ed25519.PrivateKey, salt, value []byte, seq int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq < f.highest {
		return &SeqError{Seq: seq, Highest: f.highest}
	}
	f.highest = seq
	f.publishes = append(f.publishes, fakePublish{time.Now(), string(value), seq})
	return nil
}

func TestPublisherSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, key, _ := ed25519.GenerateKey(nil)
		f := &fakeTarget{highest: 5000} // a previous run (or clock) left seq 5000
		clockSeq := int64(10)
		p, err := newPublisher(f, PublisherConfig{Key: key, Port: 7000, Seq: func() int64 { return clockSeq }})
		if err != nil {
			t.Fatal(err)
		}
		p.SetValue([]byte("v1"))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		synctest.Wait()
		f.mu.Lock()
		if len(f.announces) != 1 || len(f.publishes) != 1 || f.publishes[0].seq != 5001 {
			t.Errorf("at start: %d announces, publishes %+v; want 1 and one at seq 5001", len(f.announces), f.publishes)
		}
		f.mu.Unlock()

		// Unchanged: republished with the same seq within 45–60 min; announced every ~15 min.
		time.Sleep(61 * time.Minute)
		synctest.Wait()
		f.mu.Lock()
		if len(f.publishes) != 2 || f.publishes[1].seq != 5001 {
			t.Errorf("after 61 min: publishes %+v", f.publishes)
		} else if d := f.publishes[1].at.Sub(f.publishes[0].at); d < DefaultRepublishMin || d > DefaultRepublishMax {
			t.Errorf("republished after %v", d)
		}
		if n := len(f.announces); n < 4 || n > 6 {
			t.Errorf("%d announces in 61 min, want about 5", n)
		}
		f.mu.Unlock()

		// A change is published at once, with a higher seq.
		p.SetValue([]byte("v2"))
		synctest.Wait()
		f.mu.Lock()
		last := f.publishes[len(f.publishes)-1]
		if last.value != "v2" || last.seq != 5002 {
			t.Errorf("after change: %+v", last)
		}
		f.mu.Unlock()
		// Setting the same value again publishes nothing.
		p.SetValue([]byte("v2"))
		synctest.Wait()
		f.mu.Lock()
		if f.publishes[len(f.publishes)-1] != last {
			t.Errorf("same value republished at once")
		}
		f.mu.Unlock()
		cancel()
		<-done
	})
}

func TestOperationsNeverBlock(t *testing.T) {
	n, err := New(Config{Bootstrap: []string{"127.0.0.1:1"}, OpTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Never run: bounded by OpTimeout.
	if _, err := n.Lookup(context.Background(), time.Now()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("lookup on a node never run: %v", err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	if err := n.Publish(context.Background(), key, nil, make([]byte, MaxValueSize+1), 1); err == nil {
		t.Errorf("oversize value accepted")
	}
	n.Close()
	n.Close() // idempotent
}

func TestClosedNode(t *testing.T) {
	n := startNode(t, testConfig(listenUDP(t, "127.0.0.1"), nil))
	n.Close()
	<-n.done
	if err := n.Announce(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("announce on a closed node: %v", err)
	}
}
