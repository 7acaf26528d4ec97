package proxy

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/swarmvpn/swarmvpn/internal/nstest"
	"github.com/swarmvpn/swarmvpn/internal/udpbatch"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// A piece taken on the link's receive loop for a client on another host,
// behind a network slower than the link, never waits for room in the
// relay socket's send buffer: what finds none is dropped and counted, and
// the pieces after it are refused, so that they are taken where a send
// may wait, and none of those is lost. The client is behind a 1 Mbit/s
// link (a token bucket on a veth, in a namespace of the test's own).
func TestFarInReceiveLoopNeverWaitsToSend(t *testing.T) {
	if !nstest.SlowLink(t, "1mbit") {
		return
	}
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nstest.SlowLocal, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.SetWriteBuffer(64 << 10)
	bc, err := udpbatch.New(pc, relayBatch)
	if err != nil {
		t.Fatal(err)
	}
	client := nstest.SlowNeighbour
	r := &udpRelay{pc: pc, clientAddr: client, clientIP: client}
	var total udpCounters
	r.count = udpCount{own: &r.own, total: &total}
	r.up = newUplink(t.Context(), &fakeAssociator{}, slog.New(slog.DiscardHandler), r.count)
	r.clientPort.Store(9)
	var p pacer
	defer p.close()
	const room = maxIPUDPHeaderLen + udpBufLen
	f := &farIn{r: r, a: &fakeAssoc{}, bc: bc, pc: &p, buf: make([]byte, 2*room), ms: make([]udpbatch.Message, 0, relayBatch)}

	src := wire.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 6881}
	payload := make([]byte, 1000)
	const per = relayBatch
	// As the receive loop would: pieces of per datagrams, each taken only
	// when Ready.
	offered, refused := 0, false
	for range 40 { // 1.3 MB: 10 s at 1 Mbit/s for sends that wait
		if !f.Ready(per*(1000+10), per) {
			refused = true
			break
		}
		for range per {
			f.Datagram(payload, src)
		}
		f.Flush()
		offered += per
	}
	st := r.own.stats()
	if !refused {
		t.Fatalf("%d datagrams taken on the receive loop, %d sent, %d dropped, and no piece refused", offered, st.DatagramsIn, st.DropSendFailed)
	}
	if st.DropSendFailed == 0 {
		t.Fatalf("a piece refused with none dropped (%d sent of %d)", st.DatagramsIn, offered)
	}
	if st.DatagramsIn+st.DropSendFailed != uint64(offered) {
		t.Fatalf("%d sent and %d dropped of %d taken", st.DatagramsIn, st.DropSendFailed, offered)
	}
	// The refused piece, taken on fromFar's goroutine: its sends wait for
	// room, and none is lost.
	for range per {
		f.Datagram(payload, src)
	}
	f.Flush()
	after := r.own.stats()
	if after.DropSendFailed != st.DropSendFailed || after.DatagramsIn != st.DatagramsIn+per {
		t.Fatalf("off the receive loop: %d more sent, %d more dropped; want %d and 0",
			after.DatagramsIn-st.DatagramsIn, after.DropSendFailed-st.DropSendFailed, per)
	}
	t.Logf("%d taken on the receive loop, %d dropped there, then %d sent off it", offered, st.DropSendFailed, per)
}
