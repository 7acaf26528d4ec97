package proxy

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/udpbatch"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// targetedFake is an association whose datagrams go to target until the
// client sends.
type targetedFake struct {
	fakeAssoc
	target netip.AddrPort
}

func (a *targetedFake) Target() netip.AddrPort { return a.target }

// A piece taken on the link's receive loop goes where Ready counted its
// room, even when the client sends its first datagram while it is taken:
// to the Target it was paced for, not to the client unpaced.
func TestFarInPieceKeepsItsDestination(t *testing.T) {
	pc := listenUDP(t, "127.0.0.1:0")
	target := listenUDP(t, "127.0.0.1:0")
	app := listenUDP(t, "127.0.0.1:0")
	bc, err := udpbatch.New(pc, relayBatch)
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddr("127.0.0.1")
	r := &udpRelay{pc: pc, clientAddr: client, clientIP: client}
	var total udpCounters
	r.count = udpCount{own: &r.own, total: &total}
	r.up = newUplink(t.Context(), &fakeAssociator{}, slog.New(slog.DiscardHandler), r.count)
	var p pacer
	defer p.close()
	const room = maxIPUDPHeaderLen + udpBufLen
	a := &targetedFake{target: target.LocalAddr().(*net.UDPAddr).AddrPort()}
	f := &farIn{r: r, a: a, bc: bc, pc: &p, buf: make([]byte, 2*room), ms: make([]udpbatch.Message, 0, relayBatch)}

	if !f.Ready(100, 1) {
		t.Fatal("a piece for an empty socket refused")
	}
	// The client's first datagram, as fromClient would take it.
	r.clientPort.Store(uint32(app.LocalAddr().(*net.UDPAddr).Port))
	f.Datagram([]byte("paced"), wire.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 6881})
	f.Flush()

	st := r.own.stats()
	if st.DatagramsIn != 1 || st.ToTarget != 1 {
		t.Fatalf("%d sent, %d to the target; want 1 and 1", st.DatagramsIn, st.ToTarget)
	}
	buf := make([]byte, 100)
	target.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := target.Read(buf)
	if err != nil {
		t.Fatalf("the target got nothing: %v", err)
	}
	if got := string(buf[n-len("paced") : n]); got != "paced" {
		t.Fatalf("the target got %q", buf[:n])
	}
	app.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := app.Read(buf); err == nil {
		t.Fatalf("the client got %q, sent where no room was counted", buf[:n])
	}

	// The next piece goes to the client.
	if !f.Ready(100, 1) {
		t.Fatal("a piece for an empty socket refused")
	}
	f.Datagram([]byte("next"), wire.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 6881})
	f.Flush()
	app.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err = app.Read(buf); err != nil || string(buf[n-len("next"):n]) != "next" {
		t.Fatalf("the client got %q, %v; want the next piece", buf[:n], err)
	}
	if st := r.own.stats(); st.DatagramsIn != 2 || st.ToTarget != 1 {
		t.Fatalf("%d sent, %d to the target; want 2 and 1", st.DatagramsIn, st.ToTarget)
	}
}
