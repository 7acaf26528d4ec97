package testnet

import (
	"bytes"
	"crypto/sha256"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

// uploadOverLongLink sends size bytes through an exit reached over a link
// with 20 ms of round trip, so that yamux grows the stream's receive window
// at the exit, and returns what the exit's limits saw.
func uploadOverLongLink(t *testing.T, cfg exit.Config, size int) exit.LimitStats {
	t.Helper()
	exit := StartExitNode(t, cfg, "127.0.0.1:0")
	far := link.ExitAddr{ID: exit.Addr.ID, Addr: DelayProxy(t, exit.Addr.Addr, 10*time.Millisecond)}
	pl := startPool(t, far, nil)
	tg := StartTarget(t, "127.0.0.1:0", Digest(nil))
	c, err := pl.DialContext(t.Context(), "tcp", tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	go func() {
		c.Write(payload)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	got, err := io.ReadAll(c)
	sum := sha256.Sum256(payload)
	if err != nil || !bytes.Equal(got, sum[:]) {
		t.Fatalf("upload of %d bytes: target digest %x, %v; want %x", size, got, err, sum)
	}
	return exit.Exit.Stats().Limits
}

// TestWindowGrowthStopsAtBufferCap: over a long link, a bulk upload grows
// its stream's receive window at the exit well past 768 KiB when nothing
// caps it; with MaxBufferPerClient at 768 KiB the link's reservations stop
// there, growth is refused, and the bytes still arrive intact.
func TestWindowGrowthStopsAtBufferCap(t *testing.T) {
	if testing.Short() {
		t.Skip("bulk transfer")
	}
	const limit = 768 << 10
	const size = 24 << 20
	free := uploadOverLongLink(t, exit.Config{}, size)
	if free.BufferPeak <= limit {
		t.Fatalf("uncapped: the window never grew past %d (peak %d); the capped run would prove nothing", limit, free.BufferPeak)
	}
	capped := uploadOverLongLink(t, exit.Config{MaxBufferPerClient: limit}, size)
	if capped.BufferPeak > limit || capped.WindowGrowthRefused == 0 {
		t.Fatalf("capped at %d: peak %d, %d growths refused; want peak within the cap and some refused",
			limit, capped.BufferPeak, capped.WindowGrowthRefused)
	}
	t.Logf("peak reserved: %d uncapped, %d capped (%d growths refused)", free.BufferPeak, capped.BufferPeak, capped.WindowGrowthRefused)
}

// askForward opens a stream on sess and asks the exit for a forwarded
// port, as a client that speaks the wire protocol itself would.
func askForward(t *testing.T, sess *link.Session) (*yamux.Stream, wire.Response) {
	t.Helper()
	st, err := sess.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, _ := wire.Request{Kind: wire.KindForward}.AppendBinary(nil)
	st.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := st.Write(b); err != nil {
		t.Fatal(err)
	}
	resp, err := wire.ReadResponse(st)
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Time{})
	return st, resp
}

// TestForwardCapPerClient: a client that asks for more forwarded ports than
// the exit lends one client is refused the extra ones, whatever it sends,
// while another client still gets its own; a released port frees a slot.
func TestForwardCapPerClient(t *testing.T) {
	lc := forwardRange()
	lc.PerClient = 2
	leases, err := portfwd.NewLeases(*lc)
	if err != nil {
		t.Fatal(err)
	}
	exit := StartExitNode(t, exit.Config{Ports: leases}, "127.0.0.1:0")
	dial := func() *link.Session {
		id, _ := link.NewIdentity()
		sess, err := link.Dial(t.Context(), link.Config{Identity: id}, exit.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sess.Close() })
		return sess
	}
	greedy := dial()
	first, r1 := askForward(t, greedy)
	_, r2 := askForward(t, greedy)
	if r1.Status != wire.StatusOK || r2.Status != wire.StatusOK || r1.Bound.Port == r2.Bound.Port {
		t.Fatalf("first two forwards: %v port %d, %v port %d; want two distinct ports", r1.Status, r1.Bound.Port, r2.Status, r2.Bound.Port)
	}
	for i := range 3 {
		if _, r := askForward(t, greedy); r.Status != wire.StatusForwardCap {
			t.Fatalf("forward %d beyond the cap: %v, want %v", i+3, r.Status, wire.StatusForwardCap)
		}
	}
	if _, r := askForward(t, dial()); r.Status != wire.StatusOK {
		t.Fatalf("another client's forward: %v, want ok", r.Status)
	}
	if n := exit.Exit.Stats().Forward.Active; n != 3 {
		t.Fatalf("%d forwards active, want 3", n)
	}
	first.Close()
	WaitFor(t, "the released forward to end", func() bool { return exit.Exit.Stats().Forward.Active == 2 })
	if _, r := askForward(t, greedy); r.Status != wire.StatusOK {
		t.Fatalf("forward after releasing one: %v, want ok", r.Status)
	}
}
