package exit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/netaddr"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// fakeMapper is a router that maps port p to p+offset, or fails as told.
type fakeMapper struct {
	mu      sync.Mutex
	addr    netip.Addr
	addrErr error
	offset  uint16
	fail    error             // every Add fails with it when set
	refuse  map[string]error  // by protocol: Adds of it fail with the error
	mapped  map[string]uint16 // "tcp/40000" -> external port
	removed []string
	changes chan struct{}
}

var _ PortMapper = (*fakeMapper)(nil)

func newFakeMapper(addr string, offset uint16) *fakeMapper {
	return &fakeMapper{addr: netip.MustParseAddr(addr), offset: offset, mapped: map[string]uint16{}, changes: make(chan struct{}, 1)}
}

func (f *fakeMapper) Add(_ context.Context, proto string, internal uint16) (uint16, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return 0, f.fail
	}
	if err := f.refuse[proto]; err != nil {
		return 0, err
	}
	k := fmt.Sprintf("%s/%d", proto, internal)
	if _, ok := f.mapped[k]; !ok {
		f.mapped[k] = internal + f.offset
	}
	return f.mapped[k], nil
}

func (f *fakeMapper) Remove(_ context.Context, proto string, internal uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fmt.Sprintf("%s/%d", proto, internal)
	delete(f.mapped, k)
	f.removed = append(f.removed, k)
	return nil
}

func (f *fakeMapper) ExternalAddr() (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addr, f.addrErr
}

func (f *fakeMapper) Changes() <-chan struct{} { return f.changes }

// change alters the router under the exit, and signals it.
func (f *fakeMapper) change(do func(f *fakeMapper)) {
	f.mu.Lock()
	do(f)
	f.mu.Unlock()
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

func (f *fakeMapper) has(k string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.mapped[k]
	return ok
}

// oneLender lends one fixed port.
type oneLender struct{ port uint16 }

func (l oneLender) Acquire(_ link.PeerID, _ netip.Addr, _ uint16, try func(uint16) error) (uint16, error) {
	return l.port, try(l.port)
}
func (oneLender) Release(link.PeerID, uint16, uint64) {}
func (oneLender) Free() int                           { return 1 }
func (l oneLender) Range() (lo, hi uint16)            { return l.port, l.port }

// serveNAT runs an exit whose idea of a public address includes loopback,
// so that tests can check reachability on 127.0.0.1.
func serveNAT(t *testing.T, cfg Config) (*Server, link.ExitAddr, uint16) {
	t.Helper()
	if cfg.Link.Identity == nil {
		cfg.Link.Identity = newIdentity(t)
	}
	cfg.Resolver, cfg.DrainTimeout = loopbackResolver(), 100*time.Millisecond
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.isPublic = func(a netip.Addr) bool { return a.IsValid() && (a.IsLoopback() || netaddr.IsPublic(a)) }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	e.MapLink(t.Context(), port) // as cmd does, before serving
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e, link.ExitAddr{ID: cfg.Link.Identity.ID(), Addr: ln.Addr().String()}, port
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("after 10s: %s", what)
		}
	}
}

func descriptorAddrs(t *testing.T, e *Server) []string {
	t.Helper()
	s, err := e.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Verify(e.cfg.Link.Identity.ID(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return d.Addrs
}

// TestNATPublishesExternal: the descriptor leads with the router's public
// address and the link's external port, and follows the router when it
// changes.
func TestNATPublishesExternal(t *testing.T) {
	m := newFakeMapper("11.7.0.1", 1000)
	e, _, port := serveNAT(t, Config{NAT: m, Addrs: []string{"192.168.77.2:7843"}})
	want := fmt.Sprintf("11.7.0.1:%d", port+1000)
	if got := descriptorAddrs(t, e); !slices.Equal(got, []string{want, "192.168.77.2:7843"}) {
		t.Fatalf("descriptor addrs %v, want %s first", got, want)
	}
	if r := e.Report(); r.Public == nil || r.Public.LinkExternal != port+1000 || r.Public.Addr != "11.7.0.1" {
		t.Fatalf("report %+v", r.Public)
	}
	// The router restarts with another address and gives another port.
	m.change(func(f *fakeMapper) { f.addr = netip.MustParseAddr("11.7.0.9"); clear(f.mapped); f.offset = 2000 })
	want = fmt.Sprintf("11.7.0.9:%d", port+2000)
	eventually(t, "descriptor not re-signed with "+want, func() bool { return descriptorAddrs(t, e)[0] == want })

	// A double NAT: no public address, nothing public published, and the
	// exit knows it is not reachable.
	m.change(func(f *fakeMapper) { f.addr, f.addrErr = netip.Addr{}, errors.New("double NAT: ask the ISP") })
	eventually(t, "public address still published", func() bool { return descriptorAddrs(t, e)[0] == "192.168.77.2:7843" })
	eventually(t, "a double NAT not reported", func() bool {
		r := e.Report()
		return r.Reach.State == ReachUnreachable && !r.Publish && strings.Contains(r.Public.AddrError, "ask the ISP")
	})
}

// TestNATForward: a lent port is mapped TCP and UDP, the client is told the
// external port, and both mappings go when the lease ends. A router that
// refuses leaves the client with the exit's own port, and no crash.
func TestNATForward(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprint("refuse=", refuse), func(t *testing.T) {
			// A port below the ephemeral range, so that no connection
			// made meanwhile takes it before the exit binds it.
			_, portText, _ := net.SplitHostPort(restartableAddr(t))
			p, _ := strconv.Atoi(portText)
			lent := uint16(p)
			m := newFakeMapper("11.7.0.1", 7)
			if refuse {
				m.fail = errors.New("ConflictInMappingEntry")
			}
			e, addr, _ := serveNAT(t, Config{NAT: m, Ports: oneLender{lent}})
			sess, st := linkStream(t, link.Config{Identity: newIdentity(t)}, addr)
			defer sess.Close()
			resp, err := wire.Call(t.Context(), st, wire.Request{Kind: wire.KindForward}, 10*time.Second)
			if err != nil || resp.Status != wire.StatusOK {
				t.Fatalf("forward: %v %v", resp.Status, err)
			}
			want := lent + 7
			if refuse {
				want = lent
			}
			if resp.Bound.Port != want {
				t.Fatalf("told port %d, want %d", resp.Bound.Port, want)
			}
			tcpKey, udpKey := fmt.Sprintf("tcp/%d", lent), fmt.Sprintf("udp/%d", lent)
			if !refuse {
				if !m.has(tcpKey) || !m.has(udpKey) {
					t.Fatalf("mapped %v", m.mapped)
				}
				if f := e.Report().Public.Forwards; len(f) != 1 || f[0].External != want {
					t.Fatalf("report forwards %+v", f)
				}
			}
			st.Close() // the lease ends
			eventually(t, "mappings left after the lease ended", func() bool {
				m.mu.Lock()
				defer m.mu.Unlock()
				return slices.Contains(m.removed, tcpKey) && slices.Contains(m.removed, udpKey) && len(m.mapped) <= 1 // the link's own
			})
			if f := e.Report().Public.Forwards; len(f) != 0 {
				t.Fatalf("report forwards after the lease %+v", f)
			}
		})
	}
}

// TestReach: an exit asks a known exit to dial it back; reachable when the
// router maps the link port to where it listens, not reachable when it
// maps it elsewhere, unknown when the known exit may not dial there.
func TestReach(t *testing.T) {
	helper := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}})
	strict := serveExit(t, Config{})

	// offset 0: the "router" maps the link port to itself on 127.0.0.1.
	e, _, port := serveNAT(t, Config{NAT: newFakeMapper("127.0.0.1", 0), KnownExits: []link.ExitAddr{helper.addr}})
	eventually(t, "not found reachable", func() bool { return e.Reach().State == ReachReachable })
	r := e.Reach()
	if r.Addr != fmt.Sprintf("127.0.0.1:%d", port) || !strings.Contains(r.Method, helper.addr.ID.Short()) ||
		!strings.HasPrefix(r.Observed, "127.0.0.1:") || !e.Publishable() {
		t.Fatalf("reach %+v", r)
	}

	// A port nothing listens on: the dial is refused.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := uint16(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()
	m2 := newFakeMapper("127.0.0.1", 0)
	e2, _, port2 := serveNAT(t, Config{NAT: m2, KnownExits: []link.ExitAddr{helper.addr}})
	m2.change(func(f *fakeMapper) { clear(f.mapped); f.offset = closedPort - port2 })
	eventually(t, "not found unreachable", func() bool { return e2.Reach().State == ReachUnreachable })
	if r := e2.Reach(); !strings.Contains(r.Detail, "connection refused") || e2.Publishable() {
		t.Fatalf("reach %+v, publishable %v", r, e2.Publishable())
	}

	// A known exit whose policy refuses the address, and none else: unknown.
	e3, _, _ := serveNAT(t, Config{NAT: newFakeMapper("127.0.0.1", 0), KnownExits: []link.ExitAddr{strict.addr}})
	eventually(t, "no answer recorded", func() bool { return !e3.Reach().At.IsZero() })
	if r := e3.Reach(); r.State != ReachUnknown || !strings.Contains(r.Detail, "not allowed") {
		t.Fatalf("reach %+v", r)
	}
}

// TestReachRequest: the answering side of a reach request, raw: a name is
// refused; the exit dials back only the asker's own address (the one its
// link comes from), any port, and only a public one unless it allows
// private addresses; refusals are counted and dial nothing; the observed
// address comes back whatever the status.
func TestReachRequest(t *testing.T) {
	helper := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}})
	strict := serveExit(t, Config{})
	other := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}}) // another key, at the asker's address
	elsewhere := startTarget(t, "tcp4", "127.0.0.2:0", nil)
	for _, tt := range []struct {
		name string
		to   *exitHandle
		dst  wire.Addr
		want wire.Status
	}{
		{"name", helper, wire.Addr{Name: "example.com", Port: 80}, wire.StatusAddrTypeUnsupported},
		// Something answers at the asker's address, but not with its key.
		{"own address, other key", helper, mustWireAddr(t, other.addr.Addr), wire.StatusGeneralFailure},
		{"not the asker's address", helper, mustWireAddr(t, "127.0.0.2:"+elsewhere.port()), wire.StatusNotAllowed},
		{"private, strict exit", strict, mustWireAddr(t, other.addr.Addr), wire.StatusNotAllowed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sess, st := linkStream(t, link.Config{Identity: newIdentity(t)}, tt.to.addr)
			defer sess.Close()
			resp, err := wire.Call(t.Context(), st, wire.Request{Kind: wire.KindReach, Dst: tt.dst}, 20*time.Second)
			if err != nil || resp.Status != tt.want || !resp.Bound.IP.IsLoopback() {
				t.Fatalf("reach %v: %v %v bound %v; want %v", tt.dst, resp.Status, err, resp.Bound, tt.want)
			}
			io.Copy(io.Discard, st)
			st.Close()
		})
	}
	if n := elsewhere.accepted.Load(); n != 0 {
		t.Fatalf("a reach request made the exit connect to another host %d times", n)
	}
	if st := helper.exit.Stats().Reach; st.Answered != 1 || st.RefusedAddr != 1 {
		t.Fatalf("helper's reach stats %+v, want 1 answered and 1 refused", st)
	}
	if st := strict.exit.Stats().Reach; st.Answered != 0 || st.RefusedAddr != 1 {
		t.Fatalf("strict exit's reach stats %+v, want 1 refused", st)
	}
}

func mustWireAddr(t *testing.T, s string) wire.Addr {
	t.Helper()
	a, err := wire.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestNATForwardMoved: when the router moves a lent port to another
// external port, the exit tells the client on the forward stream (lease
// message "public port"), and reports the new one; the forward goes on.
func TestNATForwardMoved(t *testing.T) {
	_, portText, _ := net.SplitHostPort(restartableAddr(t))
	p, _ := strconv.Atoi(portText)
	lent := uint16(p)
	m := newFakeMapper("11.7.0.1", 7)
	e, addr, _ := serveNAT(t, Config{NAT: m, Ports: oneLender{lent}})
	sess, st := linkStream(t, link.Config{Identity: newIdentity(t)}, addr)
	defer sess.Close()
	resp, err := wire.Call(t.Context(), st, wire.Request{Kind: wire.KindForward}, 10*time.Second)
	if err != nil || resp.Status != wire.StatusOK || resp.Bound.Port != lent+7 {
		t.Fatalf("forward: %v %v port %d", resp.Status, err, resp.Bound.Port)
	}
	// The router restarts and maps everything 2 ports further.
	m.change(func(f *fakeMapper) { clear(f.mapped); f.offset = 9 })
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, wire.MaxLeaseMsg)
	typ, body, err := wire.ReadLeaseMsg(st, buf)
	if err != nil || typ != wire.LeasePublicPort {
		t.Fatalf("lease message %d %x, %v; want public port", typ, body, err)
	}
	if pp, err := wire.ParsePublicPort(body); err != nil || pp.Port != lent+9 {
		t.Fatalf("public port %v, %v; want %d", pp, err, lent+9)
	}
	if f := e.Report().Public.Forwards; len(f) != 1 || f[0].External != lent+9 {
		t.Fatalf("report forwards %+v", f)
	}
	// The forward is still there: a probe is answered on the same stream.
	msg, _ := wire.AppendLeaseMsg(nil, wire.LeaseProbe, wire.ProbeRequest{ID: 5}.Body())
	if _, err := st.Write(msg); err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(15 * time.Second))
	if typ, body, err := wire.ReadLeaseMsg(st, buf); err != nil || typ != wire.LeaseProbe {
		t.Fatalf("after the move: lease message %d %x, %v; want a probe result", typ, body, err)
	}
}

// wantLender lends one fixed port and records the port each Acquire asks
// for.
type wantLender struct {
	oneLender
	mu    sync.Mutex
	wants []uint16
}

func (l *wantLender) Acquire(peer link.PeerID, from netip.Addr, want uint16, try func(uint16) error) (uint16, error) {
	l.mu.Lock()
	l.wants = append(l.wants, want)
	l.mu.Unlock()
	return l.oneLender.Acquire(peer, from, want, try)
}

// TestNATForwardAskedAgainByToldPort: a client asks again for the port it
// was told (pool: "ask for it by number"); behind a router that gave
// another external port, that number is not the lent port, and the lender
// must be asked for the lent one. Another client naming the same number
// gets no such translation.
func TestNATForwardAskedAgainByToldPort(t *testing.T) {
	_, portText, _ := net.SplitHostPort(restartableAddr(t))
	p, _ := strconv.Atoi(portText)
	lent := uint16(p)
	lender := &wantLender{oneLender: oneLender{lent}}
	_, addr, _ := serveNAT(t, Config{NAT: newFakeMapper("11.7.0.1", 7), Ports: lender})
	id := newIdentity(t)
	forward := func(id *link.Identity, want uint16) uint16 {
		t.Helper()
		sess, st := linkStream(t, link.Config{Identity: id}, addr)
		defer sess.Close()
		defer st.Close()
		resp, err := wire.Call(t.Context(), st, wire.Request{Kind: wire.KindForward, Dst: wire.Addr{Port: want}}, 10*time.Second)
		if err != nil || resp.Status != wire.StatusOK {
			t.Fatalf("forward: %v %v", resp.Status, err)
		}
		return resp.Bound.Port
	}
	told := forward(id, 0)
	if told != lent+7 {
		t.Fatalf("told %d, want %d", told, lent+7)
	}
	if got := forward(id, told); got != told {
		t.Fatalf("told %d the second time, want %d", got, told)
	}
	forward(newIdentity(t), told)
	lender.mu.Lock()
	defer lender.mu.Unlock()
	if want := []uint16{0, lent, told}; !slices.Equal(lender.wants, want) {
		t.Fatalf("the lender was asked for %v, want %v (the lent port, not the external one)", lender.wants, want)
	}
}

// forwardNAT opens a forward of the lent port through an exit behind m,
// and returns the exit, the forward stream and the port it was told.
func forwardNAT(t *testing.T, m *fakeMapper, lent uint16) (*Server, *yamux.Stream, uint16) {
	t.Helper()
	e, addr, _ := serveNAT(t, Config{NAT: m, Ports: oneLender{lent}})
	sess, st := linkStream(t, link.Config{Identity: newIdentity(t)}, addr)
	t.Cleanup(func() { sess.Close() })
	resp, err := wire.Call(t.Context(), st, wire.Request{Kind: wire.KindForward}, 10*time.Second)
	if err != nil || resp.Status != wire.StatusOK {
		t.Fatalf("forward: %v %v", resp.Status, err)
	}
	return e, st, resp.Bound.Port
}

// readPublicPort reads the next lease message on a forward stream, which
// must tell the public port.
func readPublicPort(t *testing.T, st *yamux.Stream) uint16 {
	t.Helper()
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer st.SetReadDeadline(time.Time{})
	buf := make([]byte, wire.MaxLeaseMsg)
	typ, body, err := wire.ReadLeaseMsg(st, buf)
	if err != nil || typ != wire.LeasePublicPort {
		t.Fatalf("lease message %d %x, %v; want public port", typ, body, err)
	}
	pp, err := wire.ParsePublicPort(body)
	if err != nil {
		t.Fatal(err)
	}
	return pp.Port
}

// TestNATForwardUDPMoved: the UDP side of a lent port is re-checked too:
// when the router maps only it and then moves it, the client is told the
// new port.
func TestNATForwardUDPMoved(t *testing.T) {
	lent := lendablePort(t)
	m := newFakeMapper("11.7.0.1", 7)
	m.refuse = map[string]error{"tcp": errors.New("ConflictInMappingEntry")}
	e, st, told := forwardNAT(t, m, lent)
	if told != lent+7 {
		t.Fatalf("told %d, want the UDP side's %d", told, lent+7)
	}
	m.change(func(f *fakeMapper) { f.mapped[fmt.Sprintf("udp/%d", lent)] = lent + 9 })
	if got := readPublicPort(t, st); got != lent+9 {
		t.Fatalf("public port %d, want %d", got, lent+9)
	}
	if f := e.Report().Public.Forwards; len(f) != 1 || f[0].External != lent+9 {
		t.Fatalf("report forwards %+v", f)
	}
}

// lendablePort is a port below the ephemeral range, so that no connection
// made meanwhile takes it before the exit binds it.
func lendablePort(t *testing.T) uint16 {
	t.Helper()
	_, portText, _ := net.SplitHostPort(restartableAddr(t))
	p, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(p)
}

// TestNATForwardToldUDPSide: where the router maps a lent port's two sides
// at different external ports, the client is told the UDP side's (where
// uTP arrives), at the forward and later, when the TCP side gets mapped
// after a refusal; a later move of the UDP side is still told.
func TestNATForwardToldUDPSide(t *testing.T) {
	for _, tcpLater := range []bool{false, true} {
		t.Run(fmt.Sprint("tcpLater=", tcpLater), func(t *testing.T) {
			lent := lendablePort(t)
			tcpKey, udpKey := fmt.Sprintf("tcp/%d", lent), fmt.Sprintf("udp/%d", lent)
			m := newFakeMapper("11.7.0.1", 7)
			if tcpLater {
				m.refuse = map[string]error{"tcp": errors.New("ConflictInMappingEntry")}
			} else {
				m.mapped[tcpKey] = lent + 30
			}
			e, st, told := forwardNAT(t, m, lent)
			if told != lent+7 {
				t.Fatalf("told %d, want the UDP side's %d", told, lent+7)
			}
			if tcpLater {
				m.mu.Lock()
				m.refuse, m.mapped[tcpKey] = nil, lent+30
				m.mu.Unlock()
				e.checkForwards() // now maps the TCP side at its own port
			}
			if f := e.Report().Public.Forwards; len(f) != 1 || f[0].External != lent+7 {
				t.Fatalf("report forwards %+v, want told %d", f, lent+7)
			}
			m.change(func(f *fakeMapper) { f.mapped[udpKey] = lent + 9 })
			if got := readPublicPort(t, st); got != lent+9 {
				t.Fatalf("public port %d, want the UDP side's new %d", got, lent+9)
			}
		})
	}
}

// TestNATForwardToldFollowsMove: a move that checkForwards finds right
// after a lent port is mapped updates what its client was noted as told,
// so that the client, asking again by the new number, gets the port it
// was lent.
func TestNATForwardToldFollowsMove(t *testing.T) {
	lent := lendablePort(t)
	m := newFakeMapper("11.7.0.1", 7)
	e, _, _ := serveNAT(t, Config{NAT: m, Ports: oneLender{lent}})
	peer := newIdentity(t).ID()
	if told := e.mapForward(t.Context(), peer, lent); told != lent+7 {
		t.Fatalf("told %d, want %d", told, lent+7)
	}
	defer e.unmapForward(lent)
	// The router moves the port before anything else happens.
	m.mu.Lock()
	clear(m.mapped)
	m.offset = 9
	m.mu.Unlock()
	e.checkForwards()
	if got := e.lentUnder(peer, lent+9); got != lent {
		t.Fatalf("asked again by the new port %d: lent port %d, want %d", lent+9, got, lent)
	}
}

// However the checks of a lent port's mapping and the forward's own first
// look interleave, its client hears each external port once, and the
// newest last.
func TestTellerNewestLast(t *testing.T) {
	const port = 7000
	e := &Server{}
	e.pub.forwards = map[uint16]forwarded{port: {udp: 1}}
	var mu sync.Mutex
	var heard []uint16
	stop := e.tellForward(port, 1, func(p uint16) {
		mu.Lock()
		heard = append(heard, p)
		mu.Unlock()
		time.Sleep(10 * time.Microsecond) // a stream write takes a while
	})
	var next atomic.Uint32
	next.Store(1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				e.pub.mu.Lock()
				e.pub.forwards[port] = forwarded{udp: uint16(next.Add(1))}
				e.pub.mu.Unlock()
				e.pub.mu.Lock()
				tl := e.pub.tell[port]
				e.pub.mu.Unlock()
				tl.update(e, port)
			}
		})
	}
	wg.Wait()
	final := e.pub.forwards[port].udp
	if len(heard) == 0 || heard[len(heard)-1] != final {
		t.Fatalf("the client heard %d ports, the last %v; want the newest, %d, last", len(heard), heard[max(len(heard)-1, 0):], final)
	}
	for i := 1; i < len(heard); i++ {
		if heard[i] == heard[i-1] {
			t.Fatalf("port %d told twice in a row", heard[i])
		}
	}
	// A forward of the same port opened before this one's end keeps its
	// teller.
	stop2 := e.tellForward(port, final, func(uint16) {})
	stop()
	if e.pub.tell[port] == nil {
		t.Fatal("the end of an earlier forward removed the new one's teller")
	}
	stop2()
	if e.pub.tell[port] != nil {
		t.Fatal("the teller outlived its forward")
	}
}
