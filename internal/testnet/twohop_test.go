package testnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

// twoHop is a client on two hops: one exit that lends ports, and two
// relays, each in its own loopback /16 (127.1/16, 127.2/16, 127.3/16), so
// that the pool's rule against hops in one network lets them pair.
type twoHop struct {
	Client   *client.Client
	SOCKS    string
	Pool     *pool.Pool
	ID       *link.Identity // the client's own key
	Exit     *ExitNode
	Relays   [2]*ExitNode
	Leases   *portfwd.Leases
	Ports    chan uint16
	Inbound  *Target // where the forwarded port leads
	Received chan []byte
}

func startTwoHop(t testing.TB) *twoHop {
	t.Helper()
	th := &twoHop{Ports: make(chan uint16, 16), Received: make(chan []byte, 4)}
	leases, err := portfwd.NewLeases(*forwardRange())
	if err != nil {
		t.Fatal(err)
	}
	th.Leases = leases
	th.Exit = StartExitNode(t, exit.Config{Ports: leases}, "127.1.0.1:0")
	th.Relays[0] = StartExitNode(t, exit.Config{}, "127.2.0.1:0")
	th.Relays[1] = StartExitNode(t, exit.Config{}, "127.3.0.1:0")
	th.Inbound = StartTarget(t, "127.0.0.1:0", func(c net.Conn) {
		b, _ := io.ReadAll(c)
		th.Received <- b
	})
	th.ID, _ = link.NewIdentity()
	cfg := client.Config{Identity: th.ID, Exits: []link.ExitAddr{th.Exit.Addr}, Hops: 2,
		Relays: []link.ExitAddr{th.Relays[0].Addr, th.Relays[1].Addr}, StateDir: t.TempDir(),
		SOCKS: "127.0.0.1:0", HTTP: "off", Forward: th.Inbound.Addr,
		Tuning: client.Tuning{DialWait: 5 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		OnPort: func(port uint16) {
			select {
			case th.Ports <- port:
			default:
			}
		}}
	if th.Client, err = client.New(cfg); err != nil {
		t.Fatal(err)
	}
	th.Pool, th.SOCKS = th.Client.Pool(), th.Client.SOCKSAddr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(t, "client", func() error { return th.Client.Run(ctx) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return th
}

// relayInUse returns the relay node the active path goes through.
func (th *twoHop) relayInUse(t *testing.T) (used, other *ExitNode) {
	t.Helper()
	switch th.Pool.Status().Relay.ID {
	case th.Relays[0].Addr.ID:
		return th.Relays[0], th.Relays[1]
	case th.Relays[1].Addr.ID:
		return th.Relays[1], th.Relays[0]
	}
	t.Fatalf("the path goes through no relay: %+v", th.Pool.Status())
	return nil, nil
}

// download fetches size bytes from a fresh target through the client's
// SOCKS5 proxy and checks them.
func download(t *testing.T, socks string, size int) {
	t.Helper()
	body := randBytes(size)
	tg := StartTarget(t, "127.0.0.1:0", func(c net.Conn) { c.Write(body) })
	c, _, err := SOCKS5Dial(t.Context(), socks, tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil || sha256.Sum256(got) != sha256.Sum256(body) {
		t.Fatalf("downloaded %d bytes (%v), want %d identical", len(got), err, size)
	}
}

// TestTwoHopPath: TCP, UDP and the forwarded port work through a relay;
// the relay carried the link and dialled nothing else; the exit knows the
// client by the key derived for it, not by the client's own; and when the
// relay dies the client reaches the same exit through the other relay and
// keeps its forwarded port.
func TestTwoHopPath(t *testing.T) {
	th := startTwoHop(t)
	port := waitPort(t, th.Ports)
	used, other := th.relayInUse(t)
	if st := th.Pool.Status(); st.Exit.ID != th.Exit.Addr.ID || st.RTT <= 0 || st.RelayRTT <= 0 {
		t.Fatalf("status %+v: want exit %s and both round trips", st, th.Exit.Addr.ID.Short())
	}
	download(t, th.SOCKS, 4<<20)

	// UDP, through the inner link's association.
	echo, _ := udpEcho(t)
	u, err := SOCKS5Associate(t.Context(), th.SOCKS)
	if err != nil {
		t.Fatal(err)
	}
	payload := randBytes(1200)
	if err := u.Send(echo.LocalAddr().String(), payload); err != nil {
		t.Fatal(err)
	}
	if got, _, err := u.Receive(10 * time.Second); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("UDP echo through two hops: %d bytes, %v", len(got), err)
	}
	u.Close()

	// An inbound connection to the forwarded port comes back over the
	// inner link.
	inbound(t, port, th.Received)

	// The exit sees the derived key; the relay served one relayed link
	// and connected to no destination.
	if holder, ok := th.Leases.Holder(port); !ok || holder != th.ID.ForExit(th.Exit.Addr.ID).ID() || holder == th.ID.ID() {
		t.Fatalf("port %d held by %v (%v); want the client's key for this exit", port, holder.Short(), ok)
	}
	rs := used.Exit.Stats()
	if rs.Relay.Flows != 1 || rs.Flows.Connect != 0 || rs.Flows.UDP != 0 {
		t.Fatalf("relay: %d relayed links, %d connects, %d UDP; want 1, 0, 0", rs.Relay.Flows, rs.Flows.Connect, rs.Flows.UDP)
	}
	if es := th.Exit.Exit.Stats(); es.Flows.Connect == 0 || es.Relay.Flows != 0 {
		t.Fatalf("exit carried %d connects and relayed %d links", es.Flows.Connect, es.Relay.Flows)
	}

	// The relay dies: the same exit, through the other relay, same port.
	used.Stop()
	WaitFor(t, "the path to come back through the other relay", func() bool {
		st := th.Pool.Status()
		return st.State == pool.StateUp && st.Relay.ID == other.Addr.ID
	})
	if st := th.Pool.Status(); st.Exit.ID != th.Exit.Addr.ID || st.ForwardedPort != port {
		t.Fatalf("after the relay died: exit %s port %d, want %s port %d", st.Exit.ID.Short(), st.ForwardedPort,
			th.Exit.Addr.ID.Short(), port)
	}
	download(t, th.SOCKS, 1<<20)
	inbound(t, port, th.Received)
}

// inbound connects to the exit's forwarded port as a peer on the internet
// would and checks that the client's target got the bytes.
func inbound(t *testing.T, port uint16, received <-chan []byte) {
	t.Helper()
	c, err := net.Dial("tcp", "127.1.0.1:"+strconv.Itoa(int(port)))
	if err != nil {
		t.Fatal(err)
	}
	msg := randBytes(64 << 10)
	c.Write(msg)
	c.Close()
	select {
	case got := <-received:
		if !bytes.Equal(got, msg) {
			t.Fatalf("forwarded connection delivered %d bytes, want %d identical", len(got), len(msg))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived through the forwarded port")
	}
}

// relayAsk asks relay, on a link of a fresh client, to connect to id at
// addr, and returns its status.
func relayAsk(t *testing.T, relay link.ExitAddr, id link.PeerID, addr string) wire.Status {
	t.Helper()
	key, _ := link.NewIdentity()
	sess, err := link.Dial(t.Context(), link.Config{Identity: key}, relay)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st, err := sess.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dst, err := wire.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := wire.Request{Kind: wire.KindRelay, Dst: dst}.AppendBinary(nil)
	st.Write(append(req, id[:]...))
	st.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := wire.ReadResponse(st)
	if err != nil {
		t.Fatalf("relay request to %s: %v", addr, err)
	}
	return resp.Status
}

// TestRelayRefusesNonExits: a relay connects only to swarmvpn exits whose
// descriptor it verified, at an address its policy allows, and counts
// each refusal.
func TestRelayRefusesNonExits(t *testing.T) {
	good := StartExitNode(t, exit.Config{}, "127.1.0.1:0")
	lab := StartExitNode(t, exit.Config{}, "127.2.0.1:0") // lab policy: loopback allowed
	plain := StartTarget(t, "127.4.0.1:0", Echo)
	stranger, _ := link.NewIdentity()

	// The lab relay: a verified exit is carried; a plain server, an exit
	// under another key, are not.
	if s := relayAsk(t, lab.Addr, good.Addr.ID, good.Addr.Addr); s != wire.StatusOK {
		t.Fatalf("relay to a verified exit: status %v", s)
	}
	if s := relayAsk(t, lab.Addr, stranger.ID(), plain.Addr); s != wire.StatusNotAllowed {
		t.Fatalf("relay to a plain TCP server: status %v, want refused", s)
	}
	if s := relayAsk(t, lab.Addr, stranger.ID(), good.Addr.Addr); s != wire.StatusNotAllowed {
		t.Fatalf("relay to an exit under another key: status %v, want refused", s)
	}
	if s := relayAsk(t, lab.Addr, lab.Addr.ID, good.Addr.Addr); s != wire.StatusNotAllowed {
		t.Fatalf("relay to itself: status %v, want refused", s)
	}
	if rs := lab.Exit.Stats().Relay; rs.Flows != 1 || rs.RefusedUnverified != 2 || rs.RefusedPolicy != 1 {
		t.Fatalf("lab relay counted %+v; want 1 flow, 2 unverified, 1 policy refusal", rs)
	}

	// A relay with the default policy never dials loopback or private
	// addresses, verified exit or not.
	def := StartExitNode(t, exit.Config{Policy: &policy.Policy{}}, "127.5.0.1:0")
	if s := relayAsk(t, def.Addr, good.Addr.ID, good.Addr.Addr); s != wire.StatusNotAllowed {
		t.Fatalf("default-policy relay to loopback: status %v, want refused", s)
	}
	if rs := def.Exit.Stats().Relay; rs.RefusedPolicy != 1 || rs.Flows != 0 {
		t.Fatalf("default-policy relay counted %+v; want 1 policy refusal", rs)
	}
	// With relaying off, the kind is not spoken.
	off := StartExitNode(t, exit.Config{Relay: exit.RelayConfig{Off: true}}, "127.6.0.1:0")
	if s := relayAsk(t, off.Addr, good.Addr.ID, good.Addr.Addr); s != wire.StatusKindNotSupported {
		t.Fatalf("relay off: status %v, want kind not supported", s)
	}
	if d, _ := off.Exit.Descriptor(); bytes.Contains(d.Body, []byte(`"relay"`)) {
		t.Fatalf("an exit that does not relay says it does: %s", d.Body)
	}
	if d, _ := good.Exit.Descriptor(); !bytes.Contains(d.Body, []byte(`"relay":true`)) {
		t.Fatalf("a relaying exit does not say so: %s", d.Body)
	}
}

// TestTwoExitsSeeDifferentClients: one client key, two exits, two peer
// IDs, neither of them the client's own; and the same one again on a new
// link to the same exit.
func TestTwoExitsSeeDifferentClients(t *testing.T) {
	id, _ := link.NewIdentity()
	var seen []link.PeerID
	for range 2 {
		fr := forwardRange()
		leases, err := portfwd.NewLeases(*fr)
		if err != nil {
			t.Fatal(err)
		}
		n := StartExitNode(t, exit.Config{Ports: leases}, "127.0.0.1:0")
		for range 2 { // twice to the same exit: the same ID
			ports := make(chan uint16, 4)
			p, err := pool.New(pool.Config{Link: link.Config{Identity: id}, Exits: []link.ExitAddr{n.Addr}, Forward: true,
				OnPort: func(port uint16) { ports <- port }})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { p.Run(ctx); close(done) }()
			port := waitPort(t, ports)
			holder, _ := leases.Holder(port)
			seen = append(seen, holder)
			cancel()
			<-done
		}
	}
	if seen[0] != seen[1] || seen[2] != seen[3] {
		t.Fatalf("one exit saw two IDs of one client: %s %s / %s %s", seen[0].Short(), seen[1].Short(), seen[2].Short(), seen[3].Short())
	}
	if seen[0] == seen[2] || seen[0] == id.ID() || seen[2] == id.ID() {
		t.Fatalf("two exits saw %s and %s; the client's own ID is %s", seen[0].Short(), seen[2].Short(), id.ID().Short())
	}
}

// TestLibtorrentTwoHops: a real libtorrent leecher downloads a torrent
// from a libtorrent seeder through two hops, over TCP and over uTP.
func TestLibtorrentTwoHops(t *testing.T) {
	requireLibtorrent(t)
	th := startTwoHop(t)
	waitPort(t, th.Ports)
	dir := t.TempDir()
	seedDir := filepath.Join(dir, "seed")
	os.MkdirAll(seedDir, 0o755)
	payload := randBytes(4 << 20)
	file := filepath.Join(seedDir, "payload.bin")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	torrent := filepath.Join(dir, "t.torrent")
	if out, err := exec.Command(python, "testdata/ltpeer.py", "make", file, torrent).CombinedOutput(); err != nil {
		t.Fatalf("make torrent: %v\n%s", err, out)
	}
	for _, mode := range []string{"--tcp-only", "--utp-only"} {
		t.Run(mode[2:], func(t *testing.T) {
			before := th.Exit.Exit.Stats()
			seedPort, leechPort := freePort(t), freePort(t)
			seeder := startLT(t, "seed", torrent, seedDir, "--listen", "127.0.0.1:"+strconv.Itoa(seedPort), mode)
			seeder.expect(t, "ready", 30*time.Second)
			leechDir := filepath.Join(dir, "leech"+mode)
			leecher := startLT(t, "leech", torrent, leechDir, "--listen", "127.0.0.1:"+strconv.Itoa(leechPort),
				"--peer", "127.0.0.1:"+strconv.Itoa(seedPort), "--socks", th.SOCKS, mode, "--timeout", "90")
			leecher.expect(t, "done", 120*time.Second)
			got, err := os.ReadFile(filepath.Join(leechDir, "payload.bin"))
			if err != nil || sha256.Sum256(got) != sha256.Sum256(payload) {
				t.Fatalf("downloaded file differs from the seeded one (%v)", err)
			}
			after := th.Exit.Exit.Stats()
			carried := after.BytesIn - before.BytesIn
			if mode == "--utp-only" {
				carried = after.UDP.BytesIn - before.UDP.BytesIn
			}
			if carried < uint64(len(payload)) {
				t.Fatalf("the exit carried %d bytes toward the client, less than the %d-byte file", carried, len(payload))
			}
		})
	}
}

// TestTwoHopExitDies: when the exit of a two-hop path dies (its relay
// alive), the pool moves to another exit, through a relay, and flows work
// again; nothing goes anywhere but through a relay meanwhile.
func TestTwoHopExitDies(t *testing.T) {
	exits := []*ExitNode{StartExitNode(t, exit.Config{}, "127.1.0.1:0"), StartExitNode(t, exit.Config{}, "127.4.0.1:0")}
	relays := []*ExitNode{StartExitNode(t, exit.Config{}, "127.2.0.1:0"), StartExitNode(t, exit.Config{}, "127.3.0.1:0")}
	p := runPool(t, pool.Config{Hops: 2, Exits: []link.ExitAddr{exits[0].Addr, exits[1].Addr},
		Relays: []link.ExitAddr{relays[0].Addr, relays[1].Addr}})
	tg := StartTarget(t, "127.0.0.1:0", Echo)
	WaitFor(t, "a two-hop path", func() bool { return p.Status().State == pool.StateUp })
	echoVia(t, p, tg.Addr)
	first := p.Status().Exit.ID
	for _, n := range exits {
		if n.Addr.ID == first {
			n.Stop()
		}
	}
	WaitFor(t, "the path to move to the other exit", func() bool {
		st := p.Status()
		return st.State == pool.StateUp && st.Exit.ID != first && st.Relay.ID != (link.PeerID{})
	})
	echoVia(t, p, tg.Addr)
	for _, n := range relays {
		if s := n.Exit.Stats(); s.Flows.Connect != 0 {
			t.Fatalf("relay %s connected to a destination", n.Addr.ID.Short())
		}
	}
}
