//go:build linux

package testnet

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// seeder is a torrent client's stand-in, the forward target: a UDP socket
// and a TCP socket bound to the same port of 127.0.0.1, as libtorrent
// binds them. The TCP socket does not listen until listen is called (as a
// proxied libtorrent opens no TCP listener), yet holds the port.
type seeder struct {
	udp  *net.UDPConn
	tcp  int // the TCP socket, bound, not listening
	addr netip.AddrPort
}

func newSeeder(t *testing.T) *seeder {
	t.Helper()
	for range 50 {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		sa, _ := syscall.Getsockname(fd)
		port := sa.(*syscall.SockaddrInet4).Port
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil { // the UDP side of that port is taken: another one
			syscall.Close(fd)
			continue
		}
		t.Cleanup(func() { pc.Close() })
		s := &seeder{udp: pc, tcp: fd, addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
		t.Cleanup(func() {
			if s.tcp >= 0 {
				syscall.Close(s.tcp)
			}
		})
		return s
	}
	t.Fatal("no port free for both TCP and UDP")
	return nil
}

// listen starts listening on the seeder's TCP socket.
func (s *seeder) listen(t *testing.T) net.Listener {
	t.Helper()
	if err := syscall.Listen(s.tcp, 16); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(s.tcp), "seeder")
	s.tcp = -1
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// associate opens the seeder's UDP association through the proxy, on the
// seeder's own socket, and sends nothing.
func (s *seeder) associate(t *testing.T, socksAddr string) *UDPClient {
	t.Helper()
	u, err := SOCKS5Associate(t.Context(), socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	u.Conn.Close()
	u.Conn = s.udp
	return u
}

// TestForwardBeforeFirstDatagram: a seeder that has sent nothing receives
// a peer's datagram to the forwarded port; the exit's probe finds it
// answering over UDP; a target with no TCP listener has the exit refuse
// TCP (the peer sees a reset), until it listens again.
func TestForwardBeforeFirstDatagram(t *testing.T) {
	sd := newSeeder(t)
	tp := Start(t, Options{ForwardPorts: forwardRange(), ForwardTarget: sd.addr.String(), CheckEvery: 50 * time.Millisecond})
	port := waitPort(t, tp.Ports)
	u := sd.associate(t, tp.SOCKS)
	WaitFor(t, "the association on the forwarded port", func() bool { return tp.Exit.Stats().UDP.Active == 1 })

	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	fwd := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	if _, err := peer.WriteToUDPAddrPort([]byte("utp syn from a peer"), fwd); err != nil {
		t.Fatal(err)
	}
	b, src, err := u.Receive(10 * time.Second)
	if err != nil || string(b) != "utp syn from a peer" || src != peer.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("the seeder got %q from %v (%v) before sending anything", b, src, err)
	}
	// It answers from its socket: that is its learned port from now on.
	if err := u.Send(src.String(), []byte("utp state")); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "utp state" || from.Port() != port {
		t.Fatalf("peer got %q from %v (%v)", buf[:n], from, err)
	}
	// The proxy counts a datagram once it has handed it on: the count may
	// trail the seeder's answer.
	WaitFor(t, "the datagram to the target counted", func() bool { return tp.Client.Stats().UDP.ToTarget >= 1 })
	if st := tp.Client.Stats().UDP; st.ToTarget != 1 || st.DropNoClientPort != 0 {
		t.Errorf("udp stats %+v: want 1 datagram to the target, none dropped", st)
	}

	// The seeder answers uTP SYNs, as libtorrent does: the probe sees it.
	answering := make(chan struct{})
	stopAnswering := sync.OnceFunc(func() { close(answering) })
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(stopAnswering)
	wg.Go(func() {
		for {
			select {
			case <-answering:
				return
			default:
			}
			b, src, err := u.Receive(50 * time.Millisecond)
			if err == nil && len(b) >= 20 && b[0] == 0x41 {
				state := append([]byte{0x21, 0}, b[2:20]...)
				u.Send(src.String(), state)
			}
		}
	})
	// No TCP listener on the target: the first peer's connection is
	// refused by the client, which then has the exit refuse TCP.
	if c, err := net.DialTimeout("tcp", fwd.String(), 5*time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("the first TCP connection read %d bytes, %v: want it closed", n, err)
		}
		c.Close()
	}
	WaitFor(t, "the exit to refuse TCP", func() bool { return tp.Exit.Stats().Forward.TCPOff == 1 })
	if _, err := net.DialTimeout("tcp", fwd.String(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a peer's TCP connection to the forwarded port: %v, want connection refused", err)
	}
	r := tp.Client.CheckPort(t.Context())
	if !r.Reachable || r.Port != port || r.UDP != wire.ProbeUDPAnswered.String() || r.TCP != wire.ProbeTCPClosed.String() || r.Error != "" {
		t.Fatalf("check %+v: want reachable over UDP, TCP closed", r)
	}
	if rep := tp.Client.Report(); rep.Reachability == nil || !rep.Reachability.Reachable || rep.InboundTCP != "refusing" {
		t.Errorf("report: reachability %+v, inbound tcp %q", rep.Reachability, rep.InboundTCP)
	}

	// The target listens on TCP: the exit accepts TCP again, and the
	// probe's connection reaches the target.
	ln := sd.listen(t)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	WaitFor(t, "the exit to accept TCP again", func() bool { return tp.Exit.Stats().Forward.TCPOff == 0 })
	if r := tp.Client.CheckPort(t.Context()); !r.Reachable || r.TCP != wire.ProbeTCPAccepted.String() {
		t.Fatalf("check %+v: want TCP accepted", r)
	}

	// The seeder goes away: the port is no longer reachable, and the
	// probe's refused connection has the exit refuse TCP again.
	stopAnswering()
	ln.Close()
	u.Close()
	WaitFor(t, "the association to close", func() bool { return tp.Exit.Stats().UDP.Active == 0 })
	if r := tp.Client.CheckPort(t.Context()); r.Reachable || r.UDP != wire.ProbeUDPNoAssociation.String() ||
		r.TCP != wire.ProbeTCPRefused.String() {
		t.Fatalf("check %+v after the seeder left: want unreachable, TCP refused, no association", r)
	}
	WaitFor(t, "the exit to refuse TCP again", func() bool { return tp.Exit.Stats().Forward.TCPOff == 1 })
}

// tracker records the queries of the HTTP announces it gets.
type tracker struct {
	mu      sync.Mutex
	queries []string
	addr    string
}

func startHTTPTracker(t *testing.T) *tracker {
	tr := &tracker{}
	tg := StartTarget(t, "127.0.0.1:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			// The HTTP proxy keeps its flow to the tracker idle until the
			// client stops, which is after this target's cleanup.
			c.SetReadDeadline(time.Now().Add(time.Second))
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			tr.mu.Lock()
			tr.queries = append(tr.queries, req.URL.RawQuery)
			tr.mu.Unlock()
			body := "d8:intervali1800e5:peers0:e"
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	})
	tr.addr = tg.Addr
	return tr
}

func (tr *tracker) got() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.queries...)
}

const infoHash = "info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A"

// TestAnnounceRewriteHTTP: announces through SOCKS5 CONNECT (several on one
// kept-alive flow) and through the HTTP proxy reach the tracker with the
// forwarded port, without the user's addresses; other requests are left
// alone.
func TestAnnounceRewriteHTTP(t *testing.T) {
	sd := newSeeder(t)
	tp := Start(t, Options{ForwardPorts: forwardRange(), ForwardTarget: sd.addr.String()})
	port := waitPort(t, tp.Ports)
	tr := startHTTPTracker(t)
	ps := strconv.Itoa(int(port))

	c, _, err := SOCKS5Dial(t.Context(), tp.SOCKS, tr.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	reqs := []string{
		"/announce?" + infoHash + "&peer_id=-qB4520-abcdefghijkl&port=1&uploaded=0&downloaded=0&left=0&ipv4=192.168.1.7&event=started",
		"/scrape?" + infoHash + "&port=1",
		"/announce?" + infoHash + "&peer_id=-qB4520-abcdefghijkl&port=1&ipv6=fe80%3A%3A1&ip=203.0.113.77&left=0",
	}
	for _, r := range reqs {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: qBittorrent/4.5.2\r\n\r\n", r, tr.addr)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: tp.HTTP})}, Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + tr.addr + "/announce?" + infoHash + "&peer_id=lt&port=6881&compact=1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	want := []string{
		infoHash + "&peer_id=-qB4520-abcdefghijkl&port=" + ps + "&uploaded=0&downloaded=0&left=0&event=started",
		infoHash + "&port=1",
		infoHash + "&peer_id=-qB4520-abcdefghijkl&port=" + ps + "&ip=203.0.113.77&left=0",
		infoHash + "&peer_id=lt&port=" + ps + "&compact=1",
	}
	if got := tr.got(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the tracker got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if a := tp.Client.Report().Announces; a == nil || a.HTTP != 3 || a.PortRewrites != 3 || a.AddrStrips != 2 {
		t.Errorf("announce counts %+v", a)
	}
}

// TestAnnounceRewriteUDPTracker: a BEP 15 connect/announce exchange through
// a UDP association reaches the tracker with the forwarded port; the same
// bytes to a destination that is no tracker arrive unchanged.
func TestAnnounceRewriteUDPTracker(t *testing.T) {
	sd := newSeeder(t)
	tp := Start(t, Options{ForwardPorts: forwardRange(), ForwardTarget: sd.addr.String()})
	port := waitPort(t, tp.Ports)

	trk := listenUDP4(t)
	other := listenUDP4(t)
	got := make(chan []byte, 4)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := trk.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p := append([]byte(nil), buf[:n]...)
			if n == 16 && binary.BigEndian.Uint64(p) == 0x41727101980 {
				resp := make([]byte, 16)
				copy(resp[4:8], p[12:16])
				binary.BigEndian.PutUint64(resp[8:], 0xc0ffee)
				trk.WriteToUDPAddrPort(resp, from)
				continue
			}
			got <- p
		}
	}()

	u, err := SOCKS5Associate(t.Context(), tp.SOCKS)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	connect := make([]byte, 16)
	binary.BigEndian.PutUint64(connect, 0x41727101980)
	binary.BigEndian.PutUint32(connect[12:], 4242)
	trkAddr := trk.LocalAddr().String()
	if err := u.Send(trkAddr, connect); err != nil {
		t.Fatal(err)
	}
	resp, _, err := u.Receive(10 * time.Second)
	if err != nil || len(resp) != 16 {
		t.Fatalf("connect response %x, %v", resp, err)
	}
	announce := make([]byte, 98)
	copy(announce, resp[8:16])
	binary.BigEndian.PutUint32(announce[8:], 1)
	copy(announce[16:56], "12345678901234567890-lt2080-abcdefghijk")
	copy(announce[84:88], []byte{192, 168, 1, 7})
	binary.BigEndian.PutUint16(announce[96:], 1)

	// To a destination that never answered a connect: untouched.
	other.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := u.Send(other.LocalAddr().String(), announce); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, _, err := other.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != string(announce) {
		t.Fatalf("a look-alike datagram arrived changed (%v)", err)
	}
	if err := u.Send(trkAddr, announce); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		want := append([]byte(nil), announce...)
		copy(want[84:88], []byte{0, 0, 0, 0})
		binary.BigEndian.PutUint16(want[96:], port)
		if string(p) != string(want) {
			t.Fatalf("the tracker got\n%x\nwant\n%x", p, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the announce never reached the tracker")
	}
	if a := tp.Client.Report().Announces; a == nil || a.UDP != 1 || a.PortRewrites != 1 || a.AddrStrips != 1 {
		t.Errorf("announce counts %+v", a)
	}
}

func listenUDP4(t *testing.T) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}
