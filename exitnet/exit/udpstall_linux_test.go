package exit

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/nstest"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// An association whose socket's send buffer is full holds up nothing else
// on the link, even while its resolver has a datagram to send: the
// resolver's send, waiting for room, held the socket's write lock, so the
// receive loop's next send to that socket waited with it, and every other
// stream of the link with the receive loop. The socket's datagrams leave
// by a veth whose token bucket lets almost nothing through, in a namespace
// of the test's own.
func TestUDPFullSocketHoldsNothing(t *testing.T) {
	if !nstest.SlowLink(t, "8bit", "link set lo up") {
		return
	}
	fd := startFakeDNS(t, map[string]netip.Addr{"far.test": nstest.SlowNeighbour})
	exit := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}, Resolver: fd.resolver()})
	pl := startPool(t, exit.addr)
	stuck, other := associate(t, pl), associate(t, pl)
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	// Fill the stuck association's send buffer: its sends fail at once.
	far := wire.Addr{IP: nstest.SlowNeighbour, Port: 9}
	payload := make([]byte, 1400)
	sent := uint64(0)
	for ; sent < 5000 && exit.exit.Stats().UDP.DropSend == 0; sent++ {
		if err := stuck.WriteTo(payload, far); err != nil {
			t.Fatal(err)
		}
	}
	// All taken (sent or refused), at least one refused: nothing more
	// moves the counts but what follows.
	waitFor(t, "the stuck socket to refuse a datagram", func() bool {
		st := exit.exit.Stats().UDP
		return st.DropSend > 0 && st.DatagramsOut+st.DropSend == sent
	})
	// A datagram by name: the resolver sends it into the full buffer.
	drops := exit.exit.Stats().UDP.DropSend
	if err := stuck.WriteTo(payload, wire.Addr{Name: "far.test", Port: 9}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the name looked up", func() bool { return fd.asked("far.test") })
	waitFor(t, "the resolver to send", func() bool {
		return exit.exit.Stats().UDP.DropSend > drops || goroutinesIn("(*udpIn).sendOne") > 0
	})
	// The receive loop's next send to the stuck socket.
	if err := stuck.WriteTo(payload, far); err != nil {
		t.Fatal(err)
	}
	// Another association of the same link goes on.
	want := []byte("through")
	sinkAddr := wire.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: udpAddrOf(sink).Port()}
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 100)
		sink.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := sink.ReadFromUDPAddrPort(buf)
		if err != nil {
			got <- nil
			return
		}
		got <- buf[:n]
	}()
	if err := other.WriteTo(want, sinkAddr); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != string(want) {
		t.Fatalf("the other association's datagram: %q, want %q: the link's receive loop waits", b, want)
	}
}
