package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
)

// router is an exit.PortMapper that maps internal port p to p+offset and
// reports a public address, or none.
type router struct {
	mu      sync.Mutex
	addr    netip.Addr
	addrErr error
	offset  uint16
	mapped  map[string]uint16
	changes chan struct{}
}

var _ exit.PortMapper = (*router)(nil)

func newRouter(addr string, offset uint16) *router {
	r := &router{offset: offset, mapped: map[string]uint16{}, changes: make(chan struct{}, 1)}
	if addr == "" {
		r.addrErr = errors.New("the router reports no external address")
	} else {
		r.addr = netip.MustParseAddr(addr)
	}
	return r
}

func (r *router) Add(_ context.Context, proto string, internal uint16) (uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := fmt.Sprintf("%s/%d", proto, internal)
	if _, ok := r.mapped[k]; !ok {
		r.mapped[k] = internal + r.offset
	}
	return r.mapped[k], nil
}

func (r *router) Remove(_ context.Context, proto string, internal uint16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.mapped, fmt.Sprintf("%s/%d", proto, internal))
	return nil
}

func (r *router) ExternalAddr() (netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr, r.addrErr
}

func (r *router) Changes() <-chan struct{} { return r.changes }

// change alters the router and signals it: a new public address (none for
// "") and a new offset for the mappings it makes again.
func (r *router) change(addr string, offset uint16) {
	r.mu.Lock()
	if addr == "" {
		r.addr, r.addrErr = netip.Addr{}, errors.New("the router reports no external address")
	} else {
		r.addr, r.addrErr = netip.MustParseAddr(addr), nil
	}
	clear(r.mapped)
	r.offset = offset
	r.mu.Unlock()
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

// startNATExit runs an exit behind r that is on d, and returns it with its
// link port and its DHT socket's port.
func startNATExit(t *testing.T, d *DHT, r *router) (*ExitNode, uint16, int) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := StartExitNode(t, exit.Config{NAT: r,
		DHT: &exit.DHTConfig{Node: DHTNodeConfig(conn, d.Bootstrap()), SeqFile: t.TempDir() + "/seq"}}, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(n.Addr.Addr)
	var p uint16
	fmt.Sscan(port, &p)
	return n, p, conn.LocalAddr().(*net.UDPAddr).Port
}

// TestDHTExitBehindNAT: an exit behind a router maps its DHT socket's UDP
// port there, and announces the external port the router maps to its link,
// not its own; stops publishing when the
// router loses its public address (the exit then knows the internet cannot
// reach it); and publishes again, with the new external port, once the
// router has one again.
func TestDHTExitBehindNAT(t *testing.T) {
	d := StartDHT(t, 8)
	r := newRouter("11.7.0.1", 1000)
	n, port, dhtPort := startNATExit(t, d, r)
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	looker := RunDHTNode(t, DHTNodeConfig(c, d.Addrs[4:7]))

	announced := func(p uint16) bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		got, err := looker.Lookup(ctx, time.Now())
		return err == nil && slices.Contains(got, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p))
	}
	publishing := func(p uint16) func() bool {
		return func() bool {
			s := n.Exit.DHTReport()
			return s != nil && s.Publishing && s.Port == int(p) && !s.LastAnnounce.IsZero() && !s.LastPublish.IsZero()
		}
	}

	waitLong(t, "the exit publishes with the router's external port", 30*time.Second, publishing(port+1000))
	waitLong(t, "the exit maps its DHT socket's UDP port", 10*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, ok := r.mapped[fmt.Sprintf("udp/%d", dhtPort)]
		return ok
	})
	waitLong(t, "the external port announced", 30*time.Second, func() bool { return announced(port + 1000) })
	if announced(port) {
		t.Errorf("the exit announced its internal port %d", port)
	}

	r.change("", 1000)
	waitLong(t, "the exit stops publishing without a public address", 30*time.Second, func() bool {
		s := n.Exit.DHTReport()
		return !n.Exit.Publishable() && s != nil && !s.Publishing && s.Port == 0
	})

	r.change("11.7.0.9", 2000)
	waitLong(t, "the exit publishes again with the new external port", 30*time.Second, publishing(port+2000))
	waitLong(t, "the new external port announced", 30*time.Second, func() bool { return announced(port + 2000) })
}

// TestDHTExitUnreachable: an exit whose router has no public address
// joins the DHT but neither announces nor publishes.
func TestDHTExitUnreachable(t *testing.T) {
	d := StartDHT(t, 4)
	n, _, _ := startNATExit(t, d, newRouter("", 1000))
	waitLong(t, "the exit's DHT node has the others", 30*time.Second, func() bool {
		s := n.Exit.DHTReport()
		return s != nil && s.Nodes > 0
	})
	// The exit decides at once when it serves, before its node is up.
	s := n.Exit.DHTReport()
	if s.Publishing || s.Port != 0 || !s.LastAnnounce.IsZero() || !s.LastPublish.IsZero() || s.Seq != 0 {
		t.Fatalf("an exit with no public address is on the DHT: %+v", s)
	}
	if rep := n.Exit.Report(); rep.DHT == nil || rep.Publish {
		t.Fatalf("report %+v: want the DHT state and publish false", rep)
	}
}
