package exit

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

// heldTarget is a client's local app for forwarded connections: it holds
// each until the peer closes it, and records the most it held at once.
type heldTarget struct {
	ln         net.Listener
	open, peak atomic.Int64
	accepted   atomic.Int64
	wg         sync.WaitGroup
}

func startHeldTarget(t *testing.T) *heldTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &heldTarget{ln: ln}
	h.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			n := h.open.Add(1)
			for p := h.peak.Load(); n > p && !h.peak.CompareAndSwap(p, n); p = h.peak.Load() {
			}
			h.wg.Go(func() {
				defer h.open.Add(-1)
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); h.wg.Wait() })
	return h
}

// forwardingPool runs a pool that asks exit for a port and carries
// inbound connections to tg; it returns the pool once it holds the port.
func forwardingPool(t *testing.T, exit link.ExitAddr, tg *heldTarget) (*pool.Pool, uint16) {
	t.Helper()
	var d net.Dialer
	p := runPool(t, pool.Config{Link: link.Config{Identity: newIdentity(t)}, Exits: []link.ExitAddr{exit}, Forward: true,
		Inbound: func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", tg.ln.Addr().String())
		}})
	waitFor(t, "a forwarded port", func() bool { return p.Status().ForwardedPort != 0 })
	return p, p.Status().ForwardedPort
}

// TestInboundFlood: 10,000 connections to one client's forwarded port,
// from a hundred loopback addresses, all held open. The exit carries at
// most its inbound cap of them to the client and resets the rest, by cap
// or by each address's rate, and counts them; a second client's flows and
// forwarded port work throughout. (Before, the exit carried every one.)
func TestInboundFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections")
	}
	const total, sources, maxInbound = 10000, 100, 512
	lo, hi := forwardRange(4)
	exit := serveExit(t, Config{Policy: labPolicy(), Ports: newLeases(t, portfwd.LeasesConfig{Lo: lo, Hi: hi})})
	tgA, tgB := startHeldTarget(t), startHeldTarget(t)
	_, portA := forwardingPool(t, exit.addr, tgA)
	pB, portB := forwardingPool(t, exit.addr, tgB)
	echo := startTarget(t, "tcp4", "127.0.0.1:0", []byte("B is served"))

	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	var peakFlows int64
	for i := range total {
		d := net.Dialer{Timeout: 5 * time.Second,
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 1, byte(i%sources/256), byte(1+i%sources%256))}}
		c, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(int(portA)))
		if errors.Is(err, syscall.ECONNRESET) {
			continue // accepted and reset before the dial returned
		}
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%500 == 0 {
			peakFlows = max(peakFlows, exit.exit.Stats().FlowsOpen)
		}
	}
	var st Stats
	waitFor(t, "every connection judged", func() bool {
		st = exit.exit.Stats()
		f := st.Forward
		return f.Inbound+f.InboundRefusedCap+f.InboundRefusedRate == total
	})
	waitFor(t, "the carried connections at the client's app", func() bool { return tgA.accepted.Load() == int64(st.Forward.Inbound) })
	f := st.Forward
	t.Logf("carried %d, reset at the cap %d, reset for rate %d; flows open at the exit %d (peak seen %d); client's app peak %d",
		f.Inbound, f.InboundRefusedCap, f.InboundRefusedRate, st.FlowsOpen, peakFlows, tgA.peak.Load())
	if f.Inbound > maxInbound || tgA.peak.Load() > maxInbound {
		t.Errorf("the exit carried %d (the client's app held %d at once), want at most %d", f.Inbound, tgA.peak.Load(), maxInbound)
	}
	if f.InboundRefusedCap == 0 || f.InboundRefusedRate == 0 {
		t.Errorf("refusals: %d at the cap, %d for rate; want both", f.InboundRefusedCap, f.InboundRefusedRate)
	}
	if st.FlowsOpen > maxInbound+8 || peakFlows > maxInbound+8 {
		t.Errorf("flows open at the exit: %d now, %d at peak; want at most about %d", st.FlowsOpen, peakFlows, maxInbound)
	}

	// The second client is unaffected: a flow, and a peer from another
	// address on its forwarded port.
	roundTrip(t, pB, echo.ln.Addr().String(), []byte("B's flow"), []byte("B is served"))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 2, 0, 1)}}
	c, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(int(portB)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "hello B"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello B" {
		t.Fatalf("B's forwarded port: %q %v", buf, err)
	}
}

// TestHandshakeFlood: 2,000 connections that never finish the TLS
// handshake, from fifty addresses. The exit holds at most its caps of
// them, shedding the oldest, so its goroutines stay bounded; a link made
// before serves on, and a new client still links. (Before, the exit held
// a goroutine and a socket for each until its 10 s timeout.)
func TestHandshakeFlood(t *testing.T) {
	const total, sources, maxHS, perSource = 2000, 50, 64, 8
	tg := startTarget(t, "tcp4", "127.0.0.1:0", []byte("served"))
	exit := serveExit(t, Config{MaxHandshakes: maxHS, MaxHandshakesPerSource: perSource, Policy: labPolicy()})
	established := startPool(t, exit.addr)
	roundTrip(t, established, "127.0.0.1:"+tg.port(), []byte("before"), []byte("served"))
	base := runtime.NumGoroutine()

	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	peakG, peakPending := 0, 0
	for i := range total {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 3, 0, byte(1+i%sources))}}
		c, err := d.Dial("tcp", exit.addr.Addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, and no more
		conns = append(conns, c)
		if i%100 == 0 {
			peakG = max(peakG, runtime.NumGoroutine())
			peakPending = max(peakPending, exit.exit.Stats().HandshakesPending)
		}
	}
	var st Stats
	waitFor(t, "every connection accepted", func() bool {
		st = exit.exit.Stats()
		return uint64(st.HandshakesPending)+st.HandshakesShed >= total
	})
	peakG = max(peakG, runtime.NumGoroutine())
	t.Logf("pending %d (peak seen %d), shed %d; goroutines %d before, %d at peak", st.HandshakesPending, peakPending,
		st.HandshakesShed, base, peakG)
	if st.HandshakesPending > maxHS || peakPending > maxHS {
		t.Errorf("pending handshakes %d (peak %d), want at most %d", st.HandshakesPending, peakPending, maxHS)
	}
	if st.HandshakesShed < total-maxHS {
		t.Errorf("shed %d, want at least %d", st.HandshakesShed, total-maxHS)
	}
	// Each unfinished handshake holds a goroutine or two; the flood's
	// 2,000 would hold thousands.
	if limit := base + 3*maxHS + 50; peakG > limit {
		t.Errorf("goroutines: %d before the flood, %d during it; want at most %d", base, peakG, limit)
	}
	roundTrip(t, established, "127.0.0.1:"+tg.port(), []byte("during"), []byte("served"))
	fresh := startPool(t, exit.addr)
	roundTrip(t, fresh, "127.0.0.1:"+tg.port(), []byte("new client"), []byte("served"))
}

func labPolicy() *policy.Policy { return &policy.Policy{AllowPrivate: true} }
