package nat

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/nstest"
)

// TestSSDPSearchSocketTakesOnlyTheGateway: the SSDP search socket takes
// datagrams from the gateway's SSDP port only. A datagram from another
// socket on the same host (as a client of the exit could send to the
// exit's own address) is not delivered to it: the kernel answers it with
// port unreachable. The gateway's answer still arrives.
func TestSSDPSearchSocketTakesOnlyTheGateway(t *testing.T) {
	if !nstest.Isolated(t, "link set lo up") {
		return
	}
	gw := netip.MustParseAddr("127.0.0.1")
	g, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, ssdpPort)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	type result struct {
		loc *url.URL
		err error
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res := make(chan result, 1)
	go func() {
		loc, err := ssdpSearch(ctx, gw)
		res <- result{loc, err}
	}()
	buf := make([]byte, 2048)
	g.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, searcher, err := g.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no M-SEARCH: %v", err)
	}
	if !strings.HasPrefix(string(buf[:n]), "M-SEARCH * HTTP/1.1\r\n") {
		t.Fatalf("not an M-SEARCH: %q", buf[:n])
	}
	loc := "http://127.0.0.1:41143/rootDesc.xml"
	answer := []byte(strings.Replace(ssdpAnswer, "http://192.168.77.1:41143/rootDesc.xml", loc, 1))

	stranger, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(searcher))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stranger.Close() })
	if _, err := stranger.Write(answer); err != nil {
		t.Fatal(err)
	}
	stranger.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := stranger.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a stranger's datagram to the search socket: read %v, want connection refused (not delivered)", err)
	}

	if _, err := g.WriteToUDPAddrPort(answer, searcher); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.loc.String() != loc {
		t.Fatalf("ssdpSearch = %v, %v; want %s", r.loc, r.err, loc)
	}
}
