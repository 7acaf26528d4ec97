package exit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// udpEcho is a UDP server on loopback that sends every datagram back.
func udpEcho(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c
}

func udpAddrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// readDatagram reads one datagram with a bound on the wait.
func readDatagram(t testing.TB, a *pool.UDP) ([]byte, wire.Addr) {
	t.Helper()
	type res struct {
		b   []byte
		src wire.Addr
		err error
	}
	ch := make(chan res, 1)
	go func() {
		buf := make([]byte, 65536)
		n, src, err := a.ReadFrom(buf)
		ch <- res{buf[:n], src, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("ReadFrom: %v", r.err)
		}
		return r.b, r.src
	case <-time.After(10 * time.Second):
		t.Fatal("no datagram within 10s")
	}
	return nil, wire.Addr{}
}

func associate(t *testing.T, p *pool.Pool) *pool.UDP {
	t.Helper()
	a, err := p.Associate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestUDPEcho(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	pl := startPool(t, exit.addr)
	a := associate(t, pl)
	if a.Port == 0 {
		t.Fatal("association reports exit port 0")
	}
	e4 := udpEcho(t, "udp4", "127.0.0.1:0")
	cases := []struct {
		name    string
		dst     wire.Addr
		wantSrc netip.AddrPort
	}{
		{"ipv4", wire.Addr{IP: udpAddrOf(e4).Addr(), Port: udpAddrOf(e4).Port()}, udpAddrOf(e4)},
		{"domain", wire.Addr{Name: "localhost", Port: udpAddrOf(e4).Port()}, udpAddrOf(e4)},
	}
	if e6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
		e6.Close()
		e6 := udpEcho(t, "udp6", "[::1]:0")
		cases = append(cases, struct {
			name    string
			dst     wire.Addr
			wantSrc netip.AddrPort
		}{"ipv6", wire.Addr{IP: netip.IPv6Loopback(), Port: udpAddrOf(e6).Port()}, udpAddrOf(e6)})
	}
	for _, tc := range cases {
		for _, size := range []int{100, 1400, 8192} {
			payload := randBytes(size)
			if err := a.WriteTo(payload, tc.dst); err != nil {
				t.Fatal(err)
			}
			got, src := readDatagram(t, a)
			if !bytes.Equal(got, payload) {
				t.Fatalf("%s %d bytes: echo differs", tc.name, size)
			}
			if src.IP.Unmap() != tc.wantSrc.Addr() || src.Port != tc.wantSrc.Port() {
				t.Fatalf("%s: source %v, want %v", tc.name, src, tc.wantSrc)
			}
		}
	}
}

// TestUDPFullCone: a party the client never sent to reaches it through the
// association's exit-side port.
func TestUDPFullCone(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	pl := startPool(t, exit.addr)
	a := associate(t, pl)
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	msg := []byte("d1:ad2:id20:unsolicited-hello")
	if _, err := stranger.WriteToUDPAddrPort(msg, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.Port)); err != nil {
		t.Fatal(err)
	}
	got, src := readDatagram(t, a)
	if !bytes.Equal(got, msg) || src.IP.Unmap() != udpAddrOf(stranger).Addr() || src.Port != udpAddrOf(stranger).Port() {
		t.Fatalf("got %q from %v, want %q from %v", got, src, msg, udpAddrOf(stranger))
	}
}

// openFDs counts this process's open TCP and UDP sockets. Others are left
// out: the exit reads its interfaces every few seconds through a netlink
// socket, which may open and close between two looks at it.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	inet := inetInodes()
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			if inet[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
				n++
			}
		}
	}
	return n
}

// inetInodes returns the inodes of the TCP and UDP sockets open in this
// network namespace.
func inetInodes() map[string]bool {
	m := make(map[string]bool)
	for _, f := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, _ := os.ReadFile("/proc/self/net/" + f)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 9 {
				m[f[9]] = true
			}
		}
	}
	return m
}

// TestUDPOneSocketManyDestinations: a thousand destinations cost the exit
// one socket, and closing the association frees it.
func TestUDPOneSocketManyDestinations(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	pl := startPool(t, exit.addr)
	e := exit.exit
	echo := udpEcho(t, "udp4", "127.0.0.1:0")
	// Warm up: the link's own sockets must exist before the baseline.
	warm := associate(t, pl)
	warm.Close()
	waitFor(t, "the warm-up association to close", func() bool { return e.Stats().UDP.Active == 0 })
	before := openFDs(t)
	a, err := pl.Associate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The exit's own link port is refused as a destination: not counted.
	linkPort := uint16(netip.MustParseAddrPort(exit.addr.Addr).Port())
	sent := uint64(0)
	for i := range 1000 {
		// Nothing listens on these ports: the kernel drops them on loopback.
		dst := wire.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: uint16(40000 + i)}
		if dst.Port == linkPort {
			continue
		}
		if err := a.WriteTo([]byte("x"), dst); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	// A round trip after them proves the exit has processed all of them.
	a.WriteTo([]byte("sync"), wire.Addr{IP: udpAddrOf(echo).Addr(), Port: udpAddrOf(echo).Port()})
	// The echo server's own port may be among the thousand: skip its "x".
	for got, _ := readDatagram(t, a); string(got) != "sync"; got, _ = readDatagram(t, a) {
		if string(got) != "x" {
			t.Fatalf("unexpected datagram %q", got)
		}
	}
	if during := openFDs(t); during != before+1 {
		t.Fatalf("open sockets went from %d to %d for one association, want +1", before, during)
	}
	// Counters are bumped after the send returns, so the echo can beat them.
	waitFor(t, "the datagrams counted out", func() bool { return e.Stats().UDP.DatagramsOut == sent+1 })
	if st := e.Stats().UDP; st.Active != 1 || st.Associations != 2 {
		t.Fatalf("stats %+v, want 1 active of 2", st)
	}
	a.Close()
	waitFor(t, "the association's socket to close", func() bool { return e.Stats().UDP.Active == 0 })
	if after := openFDs(t); after != before {
		t.Fatalf("open sockets %d after close, want %d", after, before)
	}
}

// waitFor polls cond, for state the test cannot be told about directly.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestUDPPolicy: refused datagrams are dropped and counted, never sent.
func TestUDPPolicy(t *testing.T) {
	echo := udpEcho(t, "udp4", "127.0.0.1:0")
	allow, _ := policy.ParseRule(fmt.Sprintf("allow 127.0.0.1/32 %d", udpAddrOf(echo).Port()))
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{Rules: []policy.Rule{allow}})
	pl := startPool(t, exit.addr)
	a := associate(t, pl)
	trap, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer trap.Close()
	trapAddr := udpAddrOf(trap)

	refused := []wire.Addr{
		{IP: trapAddr.Addr(), Port: trapAddr.Port()},                         // loopback
		{IP: netip.MustParseAddr("::ffff:127.0.0.1"), Port: trapAddr.Port()}, // mapped loopback
		{Name: "localhost", Port: trapAddr.Port()},                           // resolves to loopback
		{IP: netip.MustParseAddr("10.9.8.7"), Port: 53},                      // private
	}
	for _, dst := range refused {
		a.WriteTo([]byte("must not leave"), dst)
	}
	a.WriteTo([]byte("allowed"), wire.Addr{IP: udpAddrOf(echo).Addr(), Port: udpAddrOf(echo).Port()})
	if got, _ := readDatagram(t, a); string(got) != "allowed" {
		t.Fatalf("echo %q", got)
	}
	// Loopback delivery is synchronous: had any refused datagram been sent
	// before the allowed one, it would be waiting in the trap now.
	trap.SetReadDeadline(time.Now())
	if n, _, err := trap.ReadFromUDP(make([]byte, 64)); err == nil {
		t.Fatalf("a refused datagram (%d bytes) reached its destination", n)
	}
	waitFor(t, "the allowed datagram counted", func() bool { return exit.exit.Stats().UDP.DatagramsOut == 1 })
	if st := exit.exit.Stats().UDP; st.DropPolicy != uint64(len(refused)) || st.DatagramsOut != 1 {
		t.Fatalf("stats %+v: want %d policy drops and 1 datagram out", st, len(refused))
	}
}

func TestUDPMalformedFramesDropped(t *testing.T) {
	exit := startExit(t, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
	sess, _, err := pool.Dial(t.Context(), link.Config{Identity: newIdentity(t)}, exit.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st, err := sess.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := wire.Call(t.Context(), st, wire.Request{Kind: wire.KindUDP}, 5*time.Second); err != nil || resp.Status != wire.StatusOK {
		t.Fatalf("associate: %v %v", resp.Status, err)
	}
	echo := udpEcho(t, "udp4", "127.0.0.1:0")
	// Frames whose bodies are not datagrams: unknown address type, cut short.
	for _, body := range [][]byte{{9, 1, 2}, {1, 127, 0}, {3, 200, 'a'}} {
		st.Write(append([]byte{0, byte(len(body))}, body...))
	}
	frame, _ := wire.AppendDatagram(nil, wire.Addr{IP: udpAddrOf(echo).Addr(), Port: udpAddrOf(echo).Port()}, []byte("still works"))
	st.Write(frame)
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	body, err := wire.ReadFrame(st, make([]byte, wire.MaxFrameLen))
	if err != nil {
		t.Fatal(err)
	}
	if _, got, _ := wire.ParseDatagram(body); string(got) != "still works" {
		t.Fatalf("echo %q", got)
	}
	if st := exit.exit.Stats().UDP; st.DropMalformed != 3 {
		t.Fatalf("malformed drops %d, want 3", st.DropMalformed)
	}
}

func TestUDPCapAndIdleExpiry(t *testing.T) {
	id := newIdentity(t)
	e, err := New(Config{Link: link.Config{Identity: id}, Policy: &policy.Policy{AllowPrivate: true},
		MaxUDPPerClient: 2, UDPIdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Serve(ctx, ln); close(done) }()
	defer func() { cancel(); <-done }()
	pl := startPool(t, link.ExitAddr{ID: id.ID(), Addr: ln.Addr().String()})

	a1 := associate(t, pl)
	associate(t, pl)
	if _, err := pl.Associate(t.Context()); wire.StatusOf(err) != wire.StatusNotAllowed {
		t.Fatalf("third association: %v, want not allowed", err)
	}
	if e.Stats().UDP.RefusedTooMany != 1 {
		t.Fatalf("refusal not counted: %+v", e.Stats().UDP)
	}
	// Both go quiet and expire; the client sees the end of the stream.
	if _, _, err := a1.ReadFrom(make([]byte, 10)); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadFrom on an expired association: %v, want EOF", err)
	}
	waitFor(t, "both associations to expire", func() bool { return e.Stats().UDP.Active == 0 })
	if st := e.Stats().UDP; st.ExpiredIdle != 2 {
		t.Fatalf("expired %d, want 2", st.ExpiredIdle)
	}
	associate(t, pl) // the cap counts only live associations
}

// BenchmarkUDPAssociation measures datagram round trips through the link
// and the exit's socket to a UDP echo server.
func BenchmarkUDPAssociation(b *testing.B) {
	for _, size := range []int{100, 1400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			exit := startExit(b, nil, "127.0.0.1:0", &policy.Policy{AllowPrivate: true})
			pl := startPool(b, exit.addr)
			a, err := pl.Associate(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			echo := udpEcho(b, "udp4", "127.0.0.1:0")
			dst := wire.Addr{IP: udpAddrOf(echo).Addr(), Port: udpAddrOf(echo).Port()}
			payload, buf := randBytes(size), make([]byte, 65536)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := a.WriteTo(payload, dst); err != nil {
					b.Fatal(err)
				}
				if n, _, err := a.ReadFrom(buf); err != nil || n != size {
					b.Fatalf("echo: %d bytes, %v", n, err)
				}
			}
		})
	}
}
