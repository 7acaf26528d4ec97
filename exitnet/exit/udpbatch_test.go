package exit

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// sizes covers the empty datagram, the batch slot's edges and a long one.
var batchSizes = []int{0, 1, 100, 1400, 2047, 2048, 2049, 9000, 1400, 1}

// Datagrams queued together travel in one write on the stream and leave
// the exit as separate datagrams, in order, none merged or split.
func TestUDPBatchToInternet(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	a := associate(t, startPool(t, exit.addr))
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sink.SetReadBuffer(4 << 20)
	dst := wire.Addr{IP: udpAddrOf(sink).Addr(), Port: udpAddrOf(sink).Port()}
	var sent [][]byte
	for round := range 3 {
		for i, n := range batchSizes {
			p := bytes.Repeat([]byte{byte(round*len(batchSizes) + i)}, n)
			for !a.Queue(p, dst) {
				if err := a.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			sent = append(sent, p)
		}
	}
	// A datagram too long for its address is dropped at the client.
	if !a.Queue(make([]byte, 0xffff), dst) {
		t.Fatal("Queue refused an unsendable datagram instead of dropping it")
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	sink.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, want := range sent {
		n, _, err := sink.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d: %d bytes starting %x, want %d of %x", i, n, buf[:min(n, 1)], len(want), want[:min(len(want), 1)])
		}
	}
}

// A burst from the internet reaches the client datagram by datagram, in
// order; a long one that the exit's batched read cut is counted, never
// passed on cut.
func TestUDPBatchToClient(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	a := associate(t, startPool(t, exit.addr))
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.Port)
	var sent [][]byte
	for round := range 5 {
		for i, n := range batchSizes {
			p := bytes.Repeat([]byte{byte(round*len(batchSizes) + i)}, n)
			if _, err := peer.WriteToUDPAddrPort(p, to); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, p)
		}
	}
	waitFor(t, "every datagram relayed or counted", func() bool {
		st := exit.exit.Stats().UDP
		return st.DatagramsIn+st.DropTooLong == uint64(len(sent))
	})
	var got [][]byte
	for range exit.exit.Stats().UDP.DatagramsIn {
		p, src := readDatagram(t, a)
		if src.IP != udpAddrOf(peer).Addr() || src.Port != udpAddrOf(peer).Port() {
			t.Fatalf("datagram from %v, want %v", src, udpAddrOf(peer))
		}
		got = append(got, p)
	}
	// What arrived is what was sent, in order, less the counted drops.
	j := 0
	for i, p := range got {
		for j < len(sent) && !bytes.Equal(sent[j], p) {
			if len(sent[j]) <= 2048 {
				t.Fatalf("datagram %d: %d bytes, but %d bytes (short enough for any slot) were sent before it and never came", i, len(p), len(sent[j]))
			}
			j++
		}
		if j == len(sent) {
			t.Fatalf("datagram %d (%d bytes) was not sent, or came out of order", i, len(p))
		}
		j++
	}
}

// A datagram for a name that is being looked up holds up nothing: the
// datagrams after it, on the association and on the link, go on at once,
// and it follows once the name resolves. (The exit takes datagrams on the
// link's receive loop, which must never wait for a lookup.)
func TestUDPNameLookupHoldsNothing(t *testing.T) {
	fd := startFakeDNS(t, map[string]netip.Addr{"slow.test": netip.MustParseAddr("127.0.0.1")})
	release := make(chan struct{})
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var d net.Dialer
		return d.DialContext(ctx, "udp4", fd.addr)
	}}
	exit := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}, Resolver: r})
	a := associate(t, startPool(t, exit.addr))
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	port := udpAddrOf(sink).Port()
	if err := a.WriteTo([]byte("by name"), wire.Addr{Name: "slow.test", Port: port}); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteTo([]byte("by address"), wire.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: port}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	sink.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := sink.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "by address" {
		t.Fatalf("first datagram %q, %v; want the one by address while the lookup waits", buf[:n], err)
	}
	close(release)
	n, _, err = sink.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "by name" {
		t.Fatalf("second datagram %q, %v; want the one by name", buf[:n], err)
	}
	// The resolver counts a datagram after the socket took it: the sink
	// may have it first.
	waitFor(t, "both datagrams counted out", func() bool { return exit.exit.Stats().UDP.DatagramsOut == 2 })
	if st := exit.exit.Stats().UDP; st.DatagramsOut != 2 || st.DropResolve != 0 || st.DropSend != 0 {
		t.Fatalf("%d datagrams counted out, %d drops for the name, %d in sending; want 2, 0, 0",
			st.DatagramsOut, st.DropResolve, st.DropSend)
	}
}

// heldResolver is a resolver whose queries to the fake DNS wait until
// release is closed, or their lookup gives up; dialing has a value for
// each query that has begun to wait.
func heldResolver(t *testing.T, names map[string]netip.Addr) (r *net.Resolver, dialing <-chan struct{}, release chan struct{}) {
	fd := startFakeDNS(t, names)
	release = make(chan struct{})
	d := make(chan struct{}, 100)
	r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		select {
		case d <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var dl net.Dialer
		return dl.DialContext(ctx, "udp4", fd.addr)
	}}
	return r, d, release
}

// goroutinesIn counts the goroutines whose stacks hold fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Count(string(buf), fn)
}

// An association's resolver ends with it, a lookup under way abandoned:
// none outlives the association (it used to, for as long as the lookup
// took, up to nameLookupLimit).
func TestUDPResolverEndsWithAssociation(t *testing.T) {
	r, dialing, _ := heldResolver(t, map[string]netip.Addr{"slow.test": netip.MustParseAddr("127.0.0.1")})
	exit := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}, Resolver: r})
	a := associate(t, startPool(t, exit.addr))
	if err := a.WriteTo([]byte("by name"), wire.Addr{Name: "slow.test", Port: 9}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dialing:
	case <-time.After(10 * time.Second):
		t.Fatal("the exit did not look the name up")
	}
	if n := goroutinesIn("(*udpIn).resolver"); n != 1 {
		t.Fatalf("%d resolvers during the lookup, want 1", n)
	}
	a.Close()
	// Active drops as associate returns.
	waitFor(t, "the association to end", func() bool { return exit.exit.Stats().UDP.Active == 0 })
	if n := goroutinesIn("(*udpIn).resolver"); n != 0 {
		t.Fatalf("%d resolvers left once the association ended, want 0", n)
	}
	if st := exit.exit.Stats().UDP; st.DatagramsOut != 0 {
		t.Fatalf("%d datagrams sent, want 0: the name never resolved", st.DatagramsOut)
	}
}

// Datagrams waiting for a name are bounded in bytes as well as in number:
// of 20 datagrams of 15,000 bytes, the 17 that fit in maxResolvingBytes
// wait and are sent once the name resolves; the rest are dropped.
func TestUDPResolverBytesBound(t *testing.T) {
	r, _, release := heldResolver(t, map[string]netip.Addr{"slow.test": netip.MustParseAddr("127.0.0.1")})
	exit := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}, Resolver: r})
	a := associate(t, startPool(t, exit.addr))
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	const size, sent = 15_000, 20
	fit := maxResolvingBytes / size
	if fit >= sent || fit >= maxResolving {
		t.Fatalf("the test needs more than %d datagrams of %d bytes to pass the bound", sent, size)
	}
	payload := bytes.Repeat([]byte{'x'}, size)
	for range sent {
		if err := a.WriteTo(payload, wire.Addr{Name: "slow.test", Port: udpAddrOf(sink).Port()}); err != nil {
			t.Fatal(err)
		}
	}
	// The last ones are dropped as they arrive: then all have arrived.
	waitFor(t, "the datagrams over the bound dropped", func() bool {
		return exit.exit.Stats().UDP.DropResolve == uint64(sent-fit)
	})
	close(release)
	waitFor(t, "the waiting datagrams sent", func() bool { return exit.exit.Stats().UDP.DatagramsOut == uint64(fit) })
	if st := exit.exit.Stats().UDP; st.DropResolve != uint64(sent-fit) || st.BytesOut != uint64(fit*size) {
		t.Fatalf("%d dropped, %d bytes out; want %d, %d", st.DropResolve, st.BytesOut, sent-fit, fit*size)
	}
}

// orderReceiver is a pool.Receiver that refuses every third piece, and
// takes what it refused slowly.
type orderReceiver struct {
	mu       sync.Mutex
	nums     []uint32
	sizes    []int
	readies  int
	now      bool
	onLoop   int // datagrams taken on the receive loop
	offLoop  int // and on Receive's goroutine
	want     int
	finished chan struct{}
}

func (r *orderReceiver) Ready(bytes, datagrams int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.readies++
	r.now = r.readies%3 != 0
	return r.now
}

func (r *orderReceiver) Datagram(p []byte, src wire.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nums = append(r.nums, binary.BigEndian.Uint32(p))
	r.sizes = append(r.sizes, len(p))
	if r.now {
		r.onLoop++
	} else {
		r.offLoop++
	}
	if len(r.nums) == r.want {
		close(r.finished)
	}
}

func (r *orderReceiver) Flush() {
	r.mu.Lock()
	slow := !r.now
	r.now = false
	r.mu.Unlock()
	if slow {
		time.Sleep(time.Millisecond)
	}
}

// Receive hands every datagram over whole and in order, on the link's
// receive loop or, for the pieces the receiver refused, on its caller's
// goroutine, and back.
func TestUDPReceiveRefusals(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	a := associate(t, startPool(t, exit.addr))
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.Port)
	const total = 6000
	r := &orderReceiver{want: total, finished: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- a.Receive(r) }()
	buf := make([]byte, 1400)
	for i := range total {
		// Sizes vary, so frames fall anywhere in the pieces.
		n := 4 + (i*37)%1396
		binary.BigEndian.PutUint32(buf, uint32(i))
		if _, err := peer.WriteToUDPAddrPort(buf[:n], to); err != nil {
			t.Fatal(err)
		}
		if i%25 == 24 {
			// No faster than the exit's socket can hold while the link
			// waits for the receiver.
			for deadline := time.Now().Add(10 * time.Second); exit.exit.Stats().UDP.DatagramsIn+50 < uint64(i+1); {
				if time.Now().After(deadline) {
					r.mu.Lock()
					t.Fatalf("after %d sent, the exit relayed %d, the receiver has %d", i+1, exit.exit.Stats().UDP.DatagramsIn, len(r.nums))
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	select {
	case <-r.finished:
	case <-time.After(30 * time.Second):
	}
	a.Close()
	if err := <-done; err == nil {
		t.Log("Receive returned no error after Close")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := exit.exit.Stats().UDP; st.DatagramsIn != total {
		t.Fatalf("the exit relayed %d of %d datagrams (its socket dropped some: the test sent too fast)", st.DatagramsIn, total)
	}
	for i, v := range r.nums {
		if v != uint32(i) || r.sizes[i] != 4+(i*37)%1396 {
			t.Fatalf("datagram %d is number %d of %d bytes: lost, cut or out of order", i, v, r.sizes[i])
		}
	}
	if len(r.nums) != total {
		t.Fatalf("received %d of %d datagrams", len(r.nums), total)
	}
	if r.onLoop == 0 || r.offLoop == 0 {
		t.Fatalf("%d datagrams on the receive loop, %d off it: want both paths taken", r.onLoop, r.offLoop)
	}
	t.Logf("%d datagrams on the receive loop, %d off it, %d pieces offered", r.onLoop, r.offLoop, r.readies)
}

// holdReceiver is a pool.Receiver that holds the second datagram's call
// (the first one may be handed over as Receive starts, on its goroutine)
// until release is closed, and records whether Receive had returned by
// the time the call did.
type holdReceiver struct {
	entered, release chan struct{}
	returned         atomic.Bool // set by the test once Receive returns
	lateReturn       atomic.Bool // Receive had returned while a call was under way
	calls            atomic.Int32
}

func (r *holdReceiver) Ready(bytes, datagrams int) bool { return true }

func (r *holdReceiver) Datagram(p []byte, src wire.Addr) {
	if r.calls.Add(1) == 2 {
		close(r.entered)
		<-r.release
	}
	if r.returned.Load() {
		r.lateReturn.Store(true)
	}
}

func (r *holdReceiver) Flush() {
	if r.returned.Load() {
		r.lateReturn.Store(true)
	}
}

// Receive returns only once the receiver is done with: a piece the link's
// receive loop is handing over as the association closes ends first, so
// that the caller may hand the receiver's buffers and socket to the next
// association.
func TestUDPReceiveEndsAfterCall(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	a := associate(t, startPool(t, exit.addr))
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	r := &holdReceiver{entered: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		err := a.Receive(r)
		r.returned.Store(true)
		done <- err
	}()
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.Port)
	if _, err := peer.WriteToUDPAddrPort([]byte("first"), to); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); r.calls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first datagram never reached the receiver")
		}
	}
	// Receive has handed the stream over: the next piece comes on the
	// link's receive loop.
	if _, err := peer.WriteToUDPAddrPort([]byte("held"), to); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the datagram never reached the receiver")
	}
	a.Close()
	select {
	case err := <-done:
		close(r.release)
		t.Fatalf("Receive returned (%v) while the receiver was still taking a datagram", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(r.release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Receive did not return after the association closed")
	}
	if r.lateReturn.Load() {
		t.Fatal("the receiver was called after Receive returned")
	}
	if n := r.calls.Load(); n != 2 {
		t.Fatalf("%d datagrams taken, want 2", n)
	}
}
