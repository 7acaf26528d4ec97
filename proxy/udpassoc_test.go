package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/syncbuf"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// --- the far side without a tunnel ------------------------------------------

// loopAssociator opens each association as an unconnected UDP socket on a
// loopback address ("127.0.0.1:0" or "[::1]:0"): the far side of a UDP
// association, with no tunnel. It can be told to fail its next Associate
// calls; the associations it opened can be killed.
type loopAssociator struct {
	t    testing.TB
	addr string

	calls    atomic.Int32 // Associate calls
	failNext atomic.Int32 // Associate calls still to fail

	mu     sync.Mutex
	opened []*loopAssoc
}

func newLoopAssociator(t testing.TB, addr string) *loopAssociator {
	return &loopAssociator{t: t, addr: addr}
}

var errLinkDown = errors.New("test: link down")

func (l *loopAssociator) Associate(ctx context.Context) (Association, error) {
	l.calls.Add(1)
	if l.failNext.Add(-1) >= 0 {
		return nil, &wire.Error{Status: wire.StatusNetworkUnreachable, Err: errLinkDown}
	}
	l.failNext.Store(0)
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(l.addr)))
	if err != nil {
		return nil, err
	}
	a := &loopAssoc{pc: pc, closed: make(chan struct{})}
	l.t.Cleanup(func() { pc.Close() })
	l.mu.Lock()
	l.opened = append(l.opened, a)
	l.mu.Unlock()
	return a, nil
}

// association returns the i-th association opened.
func (l *loopAssociator) association(t testing.TB, i int) *loopAssoc {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if i >= len(l.opened) {
		t.Fatalf("association %d of %d", i, len(l.opened))
	}
	return l.opened[i]
}

type loopAssoc struct {
	pc     *net.UDPConn
	writes atomic.Int64 // datagrams sent
	killed atomic.Bool
	once   sync.Once
	closed chan struct{} // closed by Close
}

// WriteTo resolves a name, only "localhost", with the system's resolver:
// here, on the far side, not in the proxy. An unknown name drops the
// datagram.
func (a *loopAssoc) WriteTo(p []byte, dst wire.Addr) error {
	if a.killed.Load() {
		return errLinkDown
	}
	ip := dst.IP
	if dst.Name != "" {
		if dst.Name != "localhost" {
			return nil
		}
		network := "ip4"
		if netip.MustParseAddrPort(a.pc.LocalAddr().String()).Addr().Is6() {
			network = "ip6"
		}
		ips, err := net.DefaultResolver.LookupNetIP(context.Background(), network, dst.Name)
		if err != nil || len(ips) == 0 {
			return nil
		}
		ip = ips[0]
	}
	a.writes.Add(1)
	_, err := a.pc.WriteToUDPAddrPort(p, netip.AddrPortFrom(ip, dst.Port))
	return err
}

func (a *loopAssoc) ReadFrom(p []byte) (int, wire.Addr, error) {
	n, from, err := a.pc.ReadFromUDPAddrPort(p)
	if err != nil {
		if a.killed.Load() {
			err = errLinkDown
		}
		return 0, wire.Addr{}, err
	}
	return n, wire.Addr{IP: from.Addr(), Port: from.Port()}, nil
}

func (a *loopAssoc) Close() error {
	a.once.Do(func() { close(a.closed) })
	return a.pc.Close()
}

// kill makes the association fail, as if its link dropped: blocked and
// later calls return an error.
func (a *loopAssoc) kill() {
	a.killed.Store(true)
	a.pc.Close()
}

func (a *loopAssoc) isClosed() bool {
	select {
	case <-a.closed:
		return true
	default:
		return false
	}
}

// addr is the association's far-side address.
func (a *loopAssoc) addr() netip.AddrPort {
	return a.pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// errAssociator fails every Associate with err.
type errAssociator struct{ err error }

func (e errAssociator) Associate(context.Context) (Association, error) { return nil, e.err }

// --- UDP sockets -------------------------------------------------------------

// listenUDP opens a UDP socket on addr; it skips the test when the address
// family is missing.
func listenUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		if strings.HasPrefix(addr, "[") || strings.HasPrefix(addr, "127.0.0.2") {
			t.Skipf("no %s: %v", addr, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// startUDPEcho runs a UDP echo server on addr and returns its address.
func startUDPEcho(t testing.TB, addr string) netip.AddrPort {
	t.Helper()
	pc := listenUDP(t, addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, udpBufLen)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// startUDPSOCKS runs a SOCKS5 server on a fresh listener on addr (for
// benchmarks too) and returns the server and its address.
func startUDPSOCKS(t testing.TB, addr string, cfg SOCKSConfig) (*SOCKS, string, func() error) {
	t.Helper()
	s, err := NewSOCKS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if strings.HasPrefix(addr, "[") {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String(), stop
}

// --- a minimal SOCKS5 UDP client ---------------------------------------------

type udpClient struct {
	ctrl  *net.TCPConn // the control connection
	pc    *net.UDPConn
	relay netip.AddrPort // the proxy's relay socket (BND.ADDR:PORT)
	buf   []byte
}

// socksAssociate opens a UDP association through the proxy at proxy,
// asking for req ("0.0.0.0:0" in general), and returns the client and the
// reply code. With pc nil, the client's UDP socket is a new one on the IP
// its control connection comes from.
func socksAssociate(t testing.TB, proxy, req string, pc *net.UDPConn) (*udpClient, byte) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msg := append(append([]byte(nil), greeting...), 5, 3, 0)
	msg = append(msg, socksAddr(t, req)...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if m, err := readMethod(c); err != nil || m != 0 {
		t.Fatalf("method %d, %v", m, err)
	}
	code, relay, err := readReply(c)
	if err != nil {
		t.Fatal(err)
	}
	if pc == nil {
		local := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
		pc = listenUDP(t, netip.AddrPortFrom(local, 0).String())
	}
	return &udpClient{ctrl: c.(*net.TCPConn), pc: pc, relay: relay, buf: make([]byte, udpBufLen)}, code
}

// send sends data to dst through the association.
func (c *udpClient) send(t testing.TB, dst wire.Addr, data []byte) {
	t.Helper()
	b, err := appendUDPHeader(nil, dst)
	if err != nil {
		t.Fatal(err)
	}
	c.sendRaw(t, append(b, data...))
}

// sendRaw sends b, header included, to the relay socket.
func (c *udpClient) sendRaw(t testing.TB, b []byte) {
	t.Helper()
	if _, err := c.pc.WriteToUDPAddrPort(b, c.relay); err != nil {
		t.Fatal(err)
	}
}

// recvWithin reads the next datagram, waiting at most d, and returns its
// source and data (valid until the next read). ok is false on timeout.
func (c *udpClient) recvWithin(t testing.TB, d time.Duration) (src wire.Addr, data []byte, ok bool) {
	t.Helper()
	c.pc.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.pc.ReadFromUDPAddrPort(c.buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return wire.Addr{}, nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	if from != c.relay {
		t.Fatalf("datagram from %v, not the relay %v", from, c.relay)
	}
	src, data, err = parseUDPHeader(c.buf[:n])
	if err != nil {
		t.Fatalf("datagram from the relay: %v", err)
	}
	return src, data, true
}

// recv reads the next datagram, waiting for a bounded time.
func (c *udpClient) recv(t testing.TB) (wire.Addr, []byte) {
	t.Helper()
	src, data, ok := c.recvWithin(t, 10*time.Second)
	if !ok {
		t.Fatal("no datagram")
	}
	return src, data
}

// echoCheck sends data to echo through the association and checks that
// it comes back from echo's address.
func (c *udpClient) echoCheck(t testing.TB, echo wire.Addr, data []byte) {
	t.Helper()
	c.send(t, echo, data)
	src, got := c.recv(t)
	if src.IP.IsValid() && echo.IP.IsValid() && src != echo {
		t.Errorf("reply from %v, want %v", src, echo)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("echoed %d bytes, not the %d sent", len(got), len(data))
	}
}

// assertOpen checks that the proxy has not closed the control connection:
// a read times out rather than returning EOF.
func (c *udpClient) assertOpen(t testing.TB) {
	t.Helper()
	c.ctrl.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var b [1]byte
	if n, err := c.ctrl.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("control connection: read %d, %v; want a timeout (still open)", n, err)
	}
	c.ctrl.SetReadDeadline(time.Time{})
}

func addrOf(ap netip.AddrPort) wire.Addr { return wire.Addr{IP: ap.Addr(), Port: ap.Port()} }

// statsEventually waits until the server's UDP totals equal want.
func statsEventually(t *testing.T, s *SOCKS, want UDPStats) {
	t.Helper()
	eventually(t, fmt.Sprintf("UDPStats %+v", want), func() bool { return s.UDPStats() == want })
	if t.Failed() {
		t.Logf("UDPStats %+v", s.UDPStats())
	}
}

// --- tests -------------------------------------------------------------------

func TestUDPAssociateEcho(t *testing.T) {
	tests := []struct {
		name    string
		proxyOn string // the SOCKS5 listener: the relay socket's IP
		farOn   string // the association's far-side socket
		echoOn  string
		dst     func(echo netip.AddrPort) wire.Addr
	}{
		{"ipv4", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", addrOf},
		{"ipv6 target", "127.0.0.1:0", "[::1]:0", "[::1]:0", addrOf},
		{"localhost", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0",
			func(e netip.AddrPort) wire.Addr { return wire.Addr{Name: "localhost", Port: e.Port()} }},
		{"ipv6 client", "[::1]:0", "127.0.0.1:0", "127.0.0.1:0", addrOf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			echo := startUDPEcho(t, tt.echoOn)
			far := newLoopAssociator(t, tt.farOn)
			s, proxy, _ := startUDPSOCKS(t, tt.proxyOn, SOCKSConfig{Dialer: &net.Dialer{}, Associator: far})
			c, code := socksAssociate(t, proxy, "0.0.0.0:0", nil)
			if code != 0 {
				t.Fatalf("reply %d, want 0", code)
			}
			if want := netip.MustParseAddrPort(proxy).Addr(); c.relay.Addr() != want || c.relay.Port() == 0 {
				t.Errorf("relay socket at %v, want %v and a port", c.relay, want)
			}
			var total uint64
			for _, size := range []int{100, 1400, 8 << 10} {
				data := randBytes(t, size)
				c.send(t, tt.dst(echo), data)
				src, got := c.recv(t)
				if src != addrOf(echo) {
					t.Errorf("%d bytes: reply from %v, want the echo server %v", size, src, echo)
				}
				if !bytes.Equal(got, data) {
					t.Errorf("%d bytes: echoed %d other bytes", size, len(got))
				}
				total += uint64(size)
			}
			c.assertOpen(t)
			statsEventually(t, s, UDPStats{Associations: 1,
				DatagramsOut: 3, BytesOut: total, DatagramsIn: 3, BytesIn: total})
		})
	}
}

// A datagram from anyone to the association's far-side socket reaches the
// client with the sender's address: that is how peers reach a torrent
// client. Before the client has sent anything, there is nowhere to send it.
func TestUDPAssociateUnsolicited(t *testing.T) {
	checkLeaks(t)
	echo := startUDPEcho(t, "127.0.0.1:0")
	far := newLoopAssociator(t, "127.0.0.1:0")
	s, proxy, _ := startUDPSOCKS(t, "127.0.0.1:0", SOCKSConfig{Dialer: &net.Dialer{}, Associator: far})
	c, _ := socksAssociate(t, proxy, "0.0.0.0:0", nil)
	farAddr := far.association(t, 0).addr()
	peer := listenUDP(t, "127.0.0.1:0")
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	if _, err := peer.WriteToUDPAddrPort([]byte("too early"), farAddr); err != nil {
		t.Fatal(err)
	}
	statsEventually(t, s, UDPStats{Associations: 1, DropNoClientPort: 1})

	c.echoCheck(t, addrOf(echo), []byte("hello"))
	incoming := randBytes(t, 1400)
	if _, err := peer.WriteToUDPAddrPort(incoming, farAddr); err != nil {
		t.Fatal(err)
	}
	src, got := c.recv(t)
	if src != addrOf(peerAddr) {
		t.Errorf("datagram from %v, want the peer %v", src, peerAddr)
	}
	if !bytes.Equal(got, incoming) {
		t.Errorf("got %d other bytes", len(got))
	}
}

// Once the client's first datagram has fixed its address, datagrams to the
// relay socket from any other address are dropped, and counted.
func TestUDPAssociateStranger(t *testing.T) {
	checkLeaks(t)
	echo := startUDPEcho(t, "127.0.0.1:0")
	far := newLoopAssociator(t, "127.0.0.1:0")
	s, proxy, _ := startUDPSOCKS(t, "127.0.0.1:0", SOCKSConfig{Dialer: &net.Dialer{}, Associator: far})
	c, _ := socksAssociate(t, proxy, "0.0.0.0:0", nil)
	c.echoCheck(t, addrOf(echo), []byte("first"))

	datagram, _ := appendUDPHeader(nil, addrOf(echo))
	datagram = append(datagram, "from a stranger"...)
	strangers := []*net.UDPConn{listenUDP(t, "127.0.0.1:0")} // the client's IP, another port
	if pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}); err == nil {
		t.Cleanup(func() { pc.Close() })
		strangers = append(strangers, pc) // another IP
	}
	for _, st := range strangers {
		if _, err := st.WriteToUDPAddrPort(datagram, c.relay); err != nil {
			t.Fatal(err)
		}
	}
	statsEventually(t, s, UDPStats{Associations: 1, DatagramsOut: 1, BytesOut: 5, DatagramsIn: 1, BytesIn: 5,
		DropStranger: uint64(len(strangers))})
	if n := far.association(t, 0).writes.Load(); n != 1 {
		t.Errorf("%d datagrams reached the far side, want only the client's 1", n)
	}
	c.echoCheck(t, addrOf(echo), []byte("still works"))
}

// A request naming a port accepts datagrams only from that port.
func TestUDPAssociateRequestedPort(t *testing.T) {
	checkLeaks(t)
	echo := startUDPEcho(t, "127.0.0.1:0")
	far := newLoopAssociator(t, "127.0.0.1:0")
	s, proxy, _ := startUDPSOCKS(t, "127.0.0.1:0", SOCKSConfig{Dialer: &net.Dialer{}, Associator: far})
	pc := listenUDP(t, "127.0.0.1:0")
	c, _ := socksAssociate(t, proxy, pc.LocalAddr().String(), pc)

	other := listenUDP(t, "127.0.0.1:0")
	datagram, _ := appendUDPHeader(nil, addrOf(echo))
	if _, err := other.WriteToUDPAddrPort(append(datagram, 'x'), c.relay); err != nil {
		t.Fatal(err)
	}
	statsEventually(t, s, UDPStats{Associations: 1, DropStranger: 1})
	c.echoCheck(t, addrOf(echo), []byte("from the named port"))
}

// Datagrams the relay cannot pass on are dropped, counted by reason, and
// the association keeps working.
func TestUDPAssociateDropsMalformed(t *testing.T) {
	checkLeaks(t)
	echo := startUDPEcho(t, "127.0.0.1:0")
	far := newLoopAssociator(t, "127.0.0.1:0")
	s, proxy, _ := startUDPSOCKS(t, "127.0.0.1:0", SOCKSConfig{Dialer: &net.Dialer{}, Associator: far})
	c, _ := socksAssociate(t, proxy, "0.0.0.0:0", nil)

	header, _ := appendUDPHeader(nil, addrOf(echo))
	frag := append([]byte{0, 0, 1}, header[3:]...)
	var want UDPStats
	for _, tt := range udpHeaderTests {
		if tt.err == nil {
			continue
		}
		c.sendRaw(t, tt.in)
		if tt.err == errUDPFrag {
			want.DropFrag++
		} else {
			want.DropMalformed++
		}
	}
	c.sendRaw(t, append(frag, "fragment"...))
	want.DropFrag++
	// Datagrams from one socket arrive in order, and the relay handles
	// them in order: once this one's echo is back, the others are counted.
	c.echoCheck(t, addrOf(echo), []byte("valid"))
	want.Associations, want.DatagramsOut, want.BytesOut = 1, 1, 5
	statsEventually(t, s, want.withIn(1, 5))
	if n := far.association(t, 0).writes.Load(); n != 1 {
		t.Errorf("%d datagrams reached the far side, want 1", n)
	}
}

func (st UDPStats) withIn(datagrams, bytes uint64) UDPStats {
	st.DatagramsIn, st.BytesIn = datagrams, bytes
	return st
}

// Closing the control connection ends the association: the relay socket
// and the Association close and every goroutine ends, while the server
// keeps serving.
func TestUDPAssociateClose(t *testing.T) {
	checkLeaks(t)
	echo := startUDPEcho(t, "127.0.0.1:0")
	far := newLoopAssociator(t, "127.0.0.1:0")
	_, proxy, _ := startUDPSOCKS(t, "127.0.0.1:0", SOCKSConfig{Dialer: &net.Dialer{}, Associator: far})
	c, _ := socksAssociate(t, proxy, "0.0.0.0:0", nil)
	c.echoCheck(t, addrOf(echo), []byte("hello"))
	c.ctrl.Close()

	a := far.association(t, 0)
	eventually(t, "Association closed", a.isClosed)
	// The relay's port is free again: its socket is closed.
	eventually(t, "relay socket closed", func() bool {
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(c.relay))
		if err != nil {
			return false
		}
		pc.Close()
		return true
	})

	c2, code := socksAssociate(t, proxy, "0.0.0.0:0", nil)
	if code != 0 {
		t.Fatalf("second association: reply %d", code)
	}
	c2.echoCheck(t, addrOf(echo), []byte("again"))
}

// Serve's end ends open associations: the control connection, the relay
// socket and the Association close before Serve returns.
func TestUDPAssociateShutdown(t *testing.T) {
	checkLeaks(t)
	echo := startUDPEcho(t, "127.0.0.1:0")
	far := newLoopAssociator(t, "127.0.0.1:0")
	_, proxy, stop := startUDPSOCKS(t, "127.0.0.1:0", SOCKSConfig{Dialer: &net.Dialer{}, Associator: far})
	c, _ := socksAssociate(t, proxy, "0.0.0.0:0", nil)
	c.echoCheck(t, addrOf(echo), []byte("hello"))

	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if !far.association(t, 0).isClosed() {
		t.Error("Serve returned with the Association open")
	}
	c.ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.ctrl.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Errorf("control connection: read %d, %v; want EOF", n, err)
	}
}

// An Associator's error is the client's reply: the wire status is the
// SOCKS5 reply code. Nothing is opened, and the connection ends.
func TestUDPAssociateRefused(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		err  error
		want byte
	}{
		{&wire.Error{Status: wire.StatusNotAllowed}, 2},
		{&wire.Error{Status: wire.StatusNetworkUnreachable, Err: errLinkDown}, 3},
		{&wire.Error{Status: wire.StatusKindNotSupported}, 7},
		{&wire.Error{Status: wire.StatusOK}, 1}, // an error that claims success
		{errTest, 1},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			s, proxy, _ := startUDPSOCKS(t, "127.0.0.1:0", SOCKSConfig{Dialer: &net.Dialer{}, Associator: errAssociator{tt.err}})
			c, code := socksAssociate(t, proxy, "0.0.0.0:0", nil)
			if code != tt.want {
				t.Fatalf("reply %d, want %d", code, tt.want)
			}
			c.ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
			if rest, err := io.ReadAll(c.ctrl); err != nil || len(rest) != 0 {
				t.Fatalf("after the reply: %q, %v; want EOF", rest, err)
			}
			if st := s.UDPStats(); st != (UDPStats{}) {
				t.Errorf("UDPStats %+v, want zero", st)
			}
		})
	}
}

// When the association to the far side fails, the proxy closes it and
// opens another by itself, here after a failed attempt and its back-off;
// the client keeps its relay address and its control connection
// throughout.
func TestUDPReassociate(t *testing.T) {
	checkLeaks(t)
	echo := startUDPEcho(t, "127.0.0.1:0")
	far := newLoopAssociator(t, "127.0.0.1:0")
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, proxy, _ := startUDPSOCKS(t, "127.0.0.1:0", SOCKSConfig{Dialer: &net.Dialer{}, Associator: far, Log: log})
	c, _ := socksAssociate(t, proxy, "0.0.0.0:0", nil)
	c.echoCheck(t, addrOf(echo), []byte("before"))

	first := far.association(t, 0)
	far.failNext.Store(1) // the first attempt fails too
	first.kill()
	eventually(t, "the failed association closed by the proxy", first.isClosed)
	c.assertOpen(t)

	// Datagrams are dropped until the association is back: send until one
	// is echoed.
	deadline := time.Now().Add(10 * time.Second)
	var sent uint64
	for {
		c.send(t, addrOf(echo), fmt.Appendf(nil, "after %d", sent))
		sent++
		if _, got, ok := c.recvWithin(t, 20*time.Millisecond); ok {
			if !bytes.HasPrefix(got, []byte("after ")) {
				t.Fatalf("echoed %q, want one of the datagrams sent", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no echo after the association failed (UDPStats %+v)", s.UDPStats())
		}
	}
	if n := far.calls.Load(); n != 3 {
		t.Errorf("%d Associate calls, want 3: the first, a failed one, a successful one", n)
	}
	// Once this echo is back, the relay has handled every datagram before
	// it; skip late echoes of those.
	c.send(t, addrOf(echo), []byte("and again"))
	for {
		_, got := c.recv(t)
		if string(got) == "and again" {
			break
		}
		if !bytes.HasPrefix(got, []byte("after ")) {
			t.Fatalf("echoed %q", got)
		}
	}
	c.assertOpen(t)
	if first.addr() == far.association(t, 1).addr() {
		t.Error("the new association has the old one's socket")
	}

	// Every datagram the client sent was either sent on or, while the link
	// was down, dropped and counted.
	eventually(t, "every datagram sent on or dropped", func() bool {
		st := s.UDPStats()
		return st.DropLinkDown+st.DatagramsOut == sent+2
	})
	st := s.UDPStats()
	if st.Associations != 1 || st.Reassociations != 1 || st.DropLinkDown < 1 {
		t.Errorf("UDPStats %+v: want 1 association, 1 re-association, datagrams dropped while the link was down", st)
	}
	if !strings.Contains(logs.String(), "level=INFO msg=\"socks5 udp association re-established\"") {
		t.Errorf("no Info record of the re-association in:\n%s", logs.String())
	}
}

// --- the uplink's back-off, in fake time --------------------------------------

// fakeAssociator opens associations that carry nothing, fails while err is
// set, and, while gate is set, waits for it before answering.
type fakeAssociator struct {
	mu     sync.Mutex
	err    error
	gate   chan struct{}
	calls  int
	opened []*fakeAssoc
}

func (f *fakeAssociator) Associate(ctx context.Context) (Association, error) {
	f.mu.Lock()
	f.calls++
	gate, err := f.gate, f.err
	f.mu.Unlock()
	if gate != nil {
		<-gate // deliberately deaf to ctx: the uplink must wait regardless
	}
	if err != nil {
		return nil, err
	}
	a := &fakeAssoc{closed: make(chan struct{})}
	f.mu.Lock()
	f.opened = append(f.opened, a)
	f.mu.Unlock()
	return a, nil
}

func (f *fakeAssociator) set(err error, gate chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.gate = err, gate
}

func (f *fakeAssociator) numCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

type fakeAssoc struct {
	once   sync.Once
	closed chan struct{}
}

func (a *fakeAssoc) WriteTo([]byte, wire.Addr) error { return nil }
func (a *fakeAssoc) ReadFrom([]byte) (int, wire.Addr, error) {
	<-a.closed
	return 0, wire.Addr{}, net.ErrClosed
}
func (a *fakeAssoc) Close() error { a.once.Do(func() { close(a.closed) }); return nil }

func TestUplinkBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fa := &fakeAssociator{}
		ctx, cancel := context.WithCancel(t.Context())
		var own, total udpCounters
		up := newUplink(ctx, fa, slog.New(slog.DiscardHandler), udpCount{&own, &total})
		first := &fakeAssoc{closed: make(chan struct{})}
		up.open(first)
		if l := up.get(); l.a != first || l.gen != 1 {
			t.Fatalf("get: %+v, want the first association", l)
		}

		// attempted lets the uplink run until it waits, and reports
		// whether it has called Associate since the last time asked.
		seen := 0
		attempted := func() bool {
			t.Helper()
			synctest.Wait()
			n := fa.numCalls()
			defer func() { seen = n }()
			if l := up.get(); l.a != nil {
				t.Fatalf("get: %+v while the link is down", l)
			}
			return n > seen
		}

		// The association fails at once: the uplink re-opens it by itself,
		// after the shortest back-off.
		fa.set(errTest, nil)
		up.fail(1, errLinkDown)
		up.fail(1, errLinkDown) // twice: no effect
		if !first.isClosed() {
			t.Fatal("the failed association is open")
		}
		time.Sleep(minReassocBackoff - 1)
		if attempted() {
			t.Fatal("an attempt before the back-off passed")
		}
		time.Sleep(1)
		if !attempted() {
			t.Fatal("no attempt once the back-off passed")
		}
		// Each failed attempt doubles the back-off, up to the maximum.
		for _, d := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second,
			4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
			time.Sleep(d - 1)
			if attempted() {
				t.Fatalf("back-off %v: an attempt before it passed", d)
			}
			time.Sleep(1)
			if !attempted() {
				t.Fatalf("back-off %v: no attempt once it passed", d)
			}
		}

		// One attempt at a time, however long it takes.
		gate := make(chan struct{})
		fa.set(nil, gate)
		time.Sleep(maxReassocBackoff)
		attempted()
		time.Sleep(3 * maxReassocBackoff)
		if attempted() {
			t.Fatal("a second attempt while one is in flight")
		}
		close(gate)
		synctest.Wait()
		l := up.get()
		if l.a == nil || l.gen != 2 {
			t.Fatalf("get: %+v, want the second association", l)
		}
		if got := <-up.ready; got != l {
			t.Errorf("ready: %+v, want %+v", got, l)
		}
		if own.stats().Reassociations != 1 || total.stats().Reassociations != 1 {
			t.Error("re-association not counted")
		}

		// An association that lived for a while is re-opened at once.
		fa.set(nil, nil)
		time.Sleep(maxReassocBackoff)
		up.fail(l.gen, errLinkDown)
		synctest.Wait()
		l = up.get()
		if l.a == nil || l.gen != 3 {
			t.Fatalf("get: %+v, want the third association at once", l)
		}

		// close waits for an attempt in flight, and closes what it opens.
		gate = make(chan struct{})
		fa.set(nil, gate)
		time.Sleep(maxReassocBackoff)
		seen = fa.numCalls()
		up.fail(l.gen, errLinkDown)
		if !attempted() {
			t.Fatal("no attempt")
		}
		cancel()
		closed := make(chan struct{})
		go func() {
			up.close()
			close(closed)
		}()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("close returned while an attempt was in flight")
		default:
		}
		close(gate)
		<-closed
		fa.mu.Lock()
		last := fa.opened[len(fa.opened)-1]
		fa.mu.Unlock()
		if !last.isClosed() {
			t.Error("the association opened during close is open")
		}
		if l := up.get(); l.a != nil {
			t.Errorf("get after close: %+v", l)
		}
		synctest.Wait()
		if n := len(fa.opened); n != 3 { // no race: no attempt can be running
			t.Errorf("%d associations opened, want 3: nothing opens after close", n)
		}
	})
}

// A relay whose association fails while the client is silent re-opens it
// by itself: after a restart of the far side, datagrams from the internet
// reach the client again before it sends anything.
func TestUplinkReopensWhileClientIsSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fa := &fakeAssociator{}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var own, total udpCounters
		up := newUplink(ctx, fa, slog.New(slog.DiscardHandler), udpCount{&own, &total})
		up.open(&fakeAssoc{closed: make(chan struct{})})
		<-up.ready
		up.fail(1, errLinkDown)
		time.Sleep(minReassocBackoff)
		synctest.Wait()
		l := up.get()
		if l.a == nil || l.gen != 2 {
			t.Fatalf("get: %+v, want a new association without the client sending", l)
		}
		if got := <-up.ready; got != l {
			t.Errorf("ready: %+v, want %+v", got, l)
		}
		cancel()
		up.close()
	})
}

func (a *fakeAssoc) isClosed() bool {
	select {
	case <-a.closed:
		return true
	default:
		return false
	}
}

// --- benchmark -----------------------------------------------------------------

// BenchmarkUDPAssociate measures datagrams through the proxy and back: one
// request and its echo per iteration, over loopback, with the loopback
// Associator as the far side. datagrams/s counts both directions.
func BenchmarkUDPAssociate(b *testing.B) {
	for _, size := range []int{100, 1400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			echo := startUDPEcho(b, "127.0.0.1:0")
			far := newLoopAssociator(b, "127.0.0.1:0")
			_, proxy, _ := startUDPSOCKS(b, "127.0.0.1:0", SOCKSConfig{Dialer: &net.Dialer{}, Associator: far})
			c, code := socksAssociate(b, proxy, "0.0.0.0:0", nil)
			if code != 0 {
				b.Fatalf("reply %d", code)
			}
			datagram, _ := appendUDPHeader(nil, addrOf(echo))
			datagram = append(datagram, randBytes(b, size)...)
			buf := make([]byte, udpBufLen)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.pc.WriteToUDPAddrPort(datagram, c.relay); err != nil {
					b.Fatal(err)
				}
				c.pc.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, _, err := c.pc.ReadFromUDPAddrPort(buf)
				if err != nil {
					b.Fatal(err)
				}
				if n != len(datagram) {
					b.Fatalf("echo of %d bytes, want %d", n, len(datagram))
				}
			}
			b.ReportMetric(2*float64(b.N)/b.Elapsed().Seconds(), "datagrams/s")
		})
	}
}

// slowNoLink answers after wait, in the test's time, that there is no link
// (as a pool does after waiting for one), until up is set.
type slowNoLink struct {
	wait  time.Duration
	up    atomic.Bool
	calls atomic.Int32
}

func (s *slowNoLink) Associate(ctx context.Context) (Association, error) {
	s.calls.Add(1)
	if s.up.Load() {
		return &fakeAssoc{closed: make(chan struct{})}, nil
	}
	time.Sleep(s.wait)
	return nil, &wire.Error{Status: wire.StatusNetworkUnreachable, Err: errLinkDown}
}

// An attempt that waited for a link and found none is followed at once by
// the next, with no back-off: the association is back as soon as the link
// is, not up to the longest back-off later.
func TestUplinkNoBackoffAfterWaitingForLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		as := &slowNoLink{wait: time.Second}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var own, total udpCounters
		up := newUplink(ctx, as, slog.New(slog.DiscardHandler), udpCount{&own, &total})
		up.open(&fakeAssoc{closed: make(chan struct{})})
		<-up.ready
		up.fail(1, errLinkDown)
		time.Sleep(minReassocBackoff) // the first attempt, after the short back-off
		for i := range 20 {
			synctest.Wait()
			if n := as.calls.Load(); n != int32(i+1) {
				t.Fatalf("after %d s of waiting attempts: %d calls, want %d", i, n, i+1)
			}
			time.Sleep(as.wait)
		}
		as.up.Store(true) // the link is back; the attempt under way finds none
		time.Sleep(as.wait)
		synctest.Wait()
		if l := up.get(); l.a == nil {
			t.Fatal("no association right after the link came back")
		}
		cancel()
		up.close()
	})
}

// targetAssociator opens loop associations that name a Target.
type targetAssociator struct {
	*loopAssociator
	target netip.AddrPort
}

type targetAssoc struct {
	*loopAssoc
	target netip.AddrPort
}

func (a targetAssoc) Target() netip.AddrPort { return a.target }

func (l targetAssociator) Associate(ctx context.Context) (Association, error) {
	a, err := l.loopAssociator.Associate(ctx)
	if err != nil {
		return nil, err
	}
	return targetAssoc{loopAssoc: a.(*loopAssoc), target: l.target}, nil
}

// Before the client has sent anything, datagrams from the far side go to
// the association's Target, from the relay socket with the SOCKS5 header;
// once the client sends, its own address wins.
func TestUDPAssociateTargetBeforeFirstDatagram(t *testing.T) {
	checkLeaks(t)
	echo := startUDPEcho(t, "127.0.0.1:0")
	seeder := listenUDP(t, "127.0.0.1:0") // a torrent client's UDP socket: it has sent nothing
	far := targetAssociator{loopAssociator: newLoopAssociator(t, "127.0.0.1:0"),
		target: seeder.LocalAddr().(*net.UDPAddr).AddrPort()}
	s, proxy, _ := startUDPSOCKS(t, "127.0.0.1:0", SOCKSConfig{Dialer: &net.Dialer{}, Associator: far})
	client := listenUDP(t, "127.0.0.1:0")
	c, _ := socksAssociate(t, proxy, "0.0.0.0:0", client)
	farAddr := far.association(t, 0).addr()
	peer := listenUDP(t, "127.0.0.1:0")
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	early := randBytes(t, 300)
	if _, err := peer.WriteToUDPAddrPort(early, farAddr); err != nil {
		t.Fatal(err)
	}
	atSeeder := &udpClient{ctrl: c.ctrl, pc: seeder, relay: c.relay, buf: make([]byte, udpBufLen)}
	src, got := atSeeder.recv(t) // checks it came from the relay socket, with a header
	if src != addrOf(peerAddr) || !bytes.Equal(got, early) {
		t.Fatalf("the target got %d bytes from %v, want %d from %v", len(got), src, len(early), peerAddr)
	}
	statsEventually(t, s, UDPStats{Associations: 1, DatagramsIn: 1, BytesIn: 300, ToTarget: 1})

	// The application sends from another port: that port is learned and wins.
	c.echoCheck(t, addrOf(echo), []byte("hello"))
	late := randBytes(t, 200)
	if _, err := peer.WriteToUDPAddrPort(late, farAddr); err != nil {
		t.Fatal(err)
	}
	if src, got := c.recv(t); src != addrOf(peerAddr) || !bytes.Equal(got, late) {
		t.Fatalf("the client got %d bytes from %v", len(got), src)
	}
	if _, _, ok := atSeeder.recvWithin(t, 50*time.Millisecond); ok {
		t.Error("the target still gets datagrams after the client sent its own")
	}
	statsEventually(t, s, UDPStats{Associations: 1, DatagramsOut: 1, BytesOut: 5, DatagramsIn: 3, BytesIn: 505, ToTarget: 1})
}
