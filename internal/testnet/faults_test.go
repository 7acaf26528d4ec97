package testnet

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

// firehose is a target that sends without end until its connection fails,
// or a write stalls for 15s, and reports how it ended on ended.
func firehose(ended chan<- error) func(net.Conn) {
	return func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for i := range buf {
			buf[i] = byte(i)
		}
		for {
			c.SetWriteDeadline(time.Now().Add(15 * time.Second))
			if _, err := c.Write(buf); err != nil {
				ended <- err
				return
			}
		}
	}
}

// TestAppAbortResetsTarget: an application that closes its flow with bytes
// still unread (its kernel answers with a reset) must make the exit close
// its connection to the target at once, not leave it open with the exit
// writing into a stream nobody reads.
func TestAppAbortResetsTarget(t *testing.T) {
	tp := Start(t, Options{})
	ended := make(chan error, 1)
	tg := StartTarget(t, "127.0.0.1:0", firehose(ended))
	c, _, err := SOCKS5Dial(t.Context(), tp.SOCKS, tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	// Read some, so the flow is surely carrying data, then abort with the
	// rest unread.
	got := make([]byte, 1<<20)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		if b != byte(i%(32<<10)) {
			t.Fatalf("byte %d is %d, want %d", i, b, byte(i%(32<<10)))
		}
	}
	if st := tp.Exit.Stats(); st.Streams != 1 {
		t.Fatalf("exit serves %+v, want one stream", st)
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()

	select {
	case err := <-ended:
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the target's writes stalled: the exit stopped reading but kept the connection (exit %+v)", tp.Exit.Stats())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("10s after the application reset its flow the exit still holds the target's connection (exit %+v)", tp.Exit.Stats())
	}
	WaitFor(t, "the exit to let go of the stream", func() bool { return tp.Exit.Stats().Streams == 0 })
}

// TestStalledLinkFailsFlows: the only link goes dead without closing.
// Keepalive notices within its timeout; the flow that was open ends with
// an error rather than hanging; new flows are refused, promptly, as no
// exit; and once a second exit is known the pool uses it.
func TestStalledLinkFailsFlows(t *testing.T) {
	app := StartTarget(t, "127.0.0.1:0", Echo)
	a := StartExitNode(t, exit.Config{}, "127.0.0.1:0")
	path := NewStallProxy(t, a.Addr.Addr)
	id, _ := link.NewIdentity()
	// A redial through the dead path hangs in its handshake; the long
	// handshake timeout shows that a newly known exit need not wait for it.
	p := runPool(t, pool.Config{Link: link.Config{Identity: id, KeepAlive: 200 * time.Millisecond,
		HandshakeTimeout: 30 * time.Second},
		Exits: []link.ExitAddr{{ID: a.Addr.ID, Addr: path.Addr}}, DialWait: 300 * time.Millisecond})
	open, err := p.DialContext(t.Context(), "tcp", app.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := io.WriteString(open, "before"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(open, got); err != nil || string(got) != "before" {
		t.Fatalf("echo before the stall: %q, %v", got, err)
	}

	path.Stall()
	io.WriteString(open, "lost") // swallowed by the dead path
	open.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := open.Read(got)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("open flow across the stalled link: read %q, %v; want the link's failure within 10s", got[:n], err)
	}
	WaitFor(t, "the pool to give up the stalled link", func() bool { return p.Status().State != pool.StateUp })
	for i := range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := p.DialContext(ctx, "tcp", app.Addr)
		cancel()
		if !errors.Is(err, pool.ErrNoExit) || wire.StatusOf(err) != wire.StatusNetworkUnreachable {
			t.Fatalf("flow %d with the only link stalled: %v, want no exit (not a hang)", i, err)
		}
	}
	if n := app.Accepted.Load(); n != 1 {
		t.Fatalf("target accepted %d connections, want the one made before the stall", n)
	}

	b := StartExitNode(t, exit.Config{}, "127.0.0.1:0")
	p.AddExit(b.Addr, discovery.SourceStatic)
	WaitFor(t, "the pool to use the second exit", func() bool { return activeExit(p) == b.Addr.ID })
	echoVia(t, p, app.Addr)
}

// TestVanishedClientReclaimed: a client's link stops carrying anything,
// without closing, while the client holds a TCP flow, a UDP association
// and a forwarded port. Within its keepalive timeout the exit lets go of
// all of it: the session, the client, the streams, the UDP socket, the
// lease (free again) and the listener on the forwarded port, and the
// target sees its connection closed.
func TestVanishedClientReclaimed(t *testing.T) {
	targetDone := make(chan error, 1)
	tg := StartTarget(t, "127.0.0.1:0", func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, c)
		targetDone <- err
	})
	fr := forwardRange()
	fr.Reservation = time.Nanosecond // a released port is free at once
	leases, err := portfwd.NewLeases(*fr)
	if err != nil {
		t.Fatal(err)
	}
	span := int(fr.Hi-fr.Lo) + 1
	exit := StartExitNode(t, exit.Config{Link: link.Config{KeepAlive: 200 * time.Millisecond}, Ports: leases}, "127.0.0.1:0")
	path := NewStallProxy(t, exit.Addr.Addr)
	id, _ := link.NewIdentity()
	ports := make(chan uint16, 4)
	// The client's own keepalive is slow: it must not close its end
	// first, which a real vanished client would not do either.
	p := runPool(t, pool.Config{Link: link.Config{Identity: id, KeepAlive: time.Minute},
		Exits: []link.ExitAddr{{ID: exit.Addr.ID, Addr: path.Addr}}, Forward: true,
		OnPort: func(port uint16) { ports <- port }})
	port := waitPort(t, ports)

	c, err := p.DialContext(t.Context(), "tcp", tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hello")
	assoc, err := p.Associate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer assoc.Close()
	WaitFor(t, "the target's connection", func() bool { return tg.Accepted.Load() == 1 })
	e := exit.Exit
	// The descriptor request that vetted the exit ends at the exit a moment
	// after the client has read it.
	WaitFor(t, "the descriptor request to end at the exit", func() bool { return e.Stats().Streams <= 3 })
	if st := e.Stats(); st.Clients != 1 || st.Links != 1 || st.Streams != 3 {
		t.Fatalf("exit holds %+v, want 1 client, 1 link, 3 streams (flow, association, forward)", st)
	}
	if u, f, free := e.Stats().UDP.Active, e.Stats().Forward.Active, leases.Free(); u != 1 || f != 1 || free != span-1 {
		t.Fatalf("exit holds %d associations, %d forwards, %d of %d ports free; want 1, 1, %d", u, f, free, span, span-1)
	}
	if holder, ok := leases.Holder(port); !ok || holder != id.ForExit(exit.Addr.ID).ID() {
		t.Fatalf("port %d held by %v (%v), want the client", port, holder.Short(), ok)
	}

	path.Stall()
	select {
	case err := <-targetDone:
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the target's connection stayed open 30s after the client vanished")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the target's connection stayed open 30s after the client vanished")
	}
	WaitFor(t, "the exit to reclaim everything", func() bool {
		st := e.Stats()
		return st.Clients == 0 && st.Links == 0 && st.Streams == 0 && st.FlowsOpen == 0 && e.Stats().UDP.Active == 0 && e.Stats().Forward.Active == 0 && leases.Free() == span
	})
	// The forwarded port's listener is closed: the port can be bound again.
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(port)))
	if err != nil {
		t.Fatalf("forwarded port %d still bound after the client vanished: %v", port, err)
	}
	ln.Close()
}
