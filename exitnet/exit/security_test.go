package exit

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/nstest"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// fakeDNS is a DNS server on loopback that answers A and AAAA queries from
// a fixed table, so tests can make names resolve to any address without a
// query leaving the machine.
type fakeDNS struct {
	addr    string
	queries sync.Map // name -> true, the names asked for
}

// startFakeDNS serves names (without the trailing dot) over UDP on
// 127.0.0.1; names not in the table get NXDOMAIN.
func startFakeDNS(t testing.TB, names map[string]netip.Addr) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fd := &fakeDNS{addr: pc.LocalAddr().String()}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		found := false
		for _, qq := range q.Question {
			name := strings.TrimSuffix(strings.ToLower(qq.Name), ".")
			fd.queries.Store(name, true)
			ip, ok := names[name]
			if !ok {
				continue
			}
			found = true
			hdr := dns.RR_Header{Name: qq.Name, Class: dns.ClassINET, Ttl: 60}
			switch {
			case qq.Qtype == dns.TypeA && ip.Is4():
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
			case qq.Qtype == dns.TypeAAAA && ip.Is6():
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
			}
		}
		if !found {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return fd
}

// resolver returns a resolver that sends every query to the fake server.
func (fd *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp4", fd.addr)
	}}
}

func (fd *fakeDNS) asked(name string) bool {
	_, ok := fd.queries.Load(name)
	return ok
}

// refusedDst is one destination the default policy must refuse, and the
// name the fake DNS server resolves to it.
type refusedDst struct {
	ip   netip.Addr
	name string
}

func refusedDsts() []refusedDst {
	var out []refusedDst
	for i, s := range []string{
		"127.0.0.1", "127.0.0.2", "127.255.255.254", "::1",
		"10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.1",
		"100.64.0.1", "169.254.169.254", "fe80::1", "fc00::1", "fd00::1",
		"::ffff:127.0.0.1", "0.0.0.0", "::",
		// IPv6 forms that carry a loopback IPv4 address; the namespace
		// routes them to itself, as a host with such routes would.
		"2002:7f00:1::1",               // 6to4
		"2001:0:7f00:1::1",             // Teredo, server 127.0.0.1
		"2001:0:101:101:0:0:80ff:fffe", // Teredo, client 127.0.0.1 (inverted)
		"::ffff:0:7f00:1",              // IPv4-translated
		"64:ff9b::7f00:1",              // NAT64
	} {
		out = append(out, refusedDst{netip.MustParseAddr(s), "refused" + strconv.Itoa(i) + ".test"})
	}
	return out
}

// loopback is a TCP listener and a UDP socket on each loopback address
// of the table that this machine has, the UDP one on the same port where
// it is free.
type loopback struct {
	ports    map[netip.Addr]uint16 // the TCP listener's
	traps    map[netip.Addr]*net.UDPConn
	accepted map[netip.Addr]*atomic.Int64
}

func startLoopback(t *testing.T) *loopback {
	t.Helper()
	lb := &loopback{ports: make(map[netip.Addr]uint16), traps: make(map[netip.Addr]*net.UDPConn),
		accepted: make(map[netip.Addr]*atomic.Int64)}
	for _, s := range []string{"127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::"} {
		ip := netip.MustParseAddr(s)
		ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			t.Logf("no listener on %s: %v", ip, err)
			continue
		}
		n := new(atomic.Int64)
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				n.Add(1)
				c.Close()
			}
		})
		t.Cleanup(func() { ln.Close(); wg.Wait() })
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
		if err != nil {
			uc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { uc.Close() })
		lb.ports[ip], lb.traps[ip], lb.accepted[ip] = port, uc, n
	}
	return lb
}

func (lb *loopback) total() int64 {
	var n int64
	for _, a := range lb.accepted {
		n += a.Load()
	}
	return n
}

// embeddedRoutes makes a namespace deliver the IPv6 forms that embed IPv4
// to itself, where the listener on [::] receives them.
var embeddedRoutes = []string{"-6 route add local 2002::/16 dev lo", "-6 route add local 2001::/32 dev lo",
	"-6 route add local ::ffff:0:0:0/96 dev lo", "-6 route add local 64:ff9b::/96 dev lo"}

// listenerFor is the address of the listener a flow to ip reaches:
// unmapped and unspecified addresses reach loopback ones, the embedding
// forms the one on [::].
func listenerFor(ip netip.Addr) netip.Addr {
	u := ip.Unmap()
	switch {
	case u == netip.IPv4Unspecified():
		return netip.MustParseAddr("127.0.0.1")
	case u == netip.IPv6Unspecified():
		return netip.IPv6Loopback()
	case embedded(u):
		return netip.IPv6Unspecified()
	}
	return u
}

// embedded reports whether ip is in a range embeddedRoutes routes.
func embedded(ip netip.Addr) bool {
	for _, p := range []string{"2002::/16", "2001::/32", "::ffff:0:0:0/96", "64:ff9b::/96"} {
		if netip.MustParsePrefix(p).Contains(ip) {
			return true
		}
	}
	return false
}

// portFor is the port a flow to ip uses: its listener's where one exists,
// else 80.
func portFor(ports map[netip.Addr]uint16, ip netip.Addr) uint16 {
	if p, ok := ports[listenerFor(ip)]; ok {
		return p
	}
	return 80
}

// TestSecurityDefaultPolicyRefuses: with the default policy the exit
// refuses every loopback, private, link-local, CGNAT, ULA, mapped and
// unspecified destination, given as an address or as a name that resolves
// to one, for TCP flows and for UDP datagrams alike. The loopback
// destinations have listeners, and a lab exit that allows private ranges
// reaches them: the refusals are the policy's, not a dead port's.
//
// It runs in a network namespace of its own with nothing but loopback, so
// that a policy that failed would reach no private network either.
func TestSecurityDefaultPolicyRefuses(t *testing.T) {
	if !nstest.Isolated(t, append([]string{"link set lo up"}, embeddedRoutes...)...) {
		return
	}
	dsts := refusedDsts()
	names := make(map[string]netip.Addr)
	for _, d := range dsts {
		names[d.name] = d.ip
	}
	fd := startFakeDNS(t, names)
	lb := startLoopback(t)
	ports, traps := lb.ports, lb.traps

	// The control: an exit that may reach loopback connects to each
	// loopback listener, by address and by name.
	lab := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}, Resolver: fd.resolver()})
	labPool := startPool(t, lab.addr)
	reached := 0
	for _, d := range dsts {
		if _, ok := ports[d.ip.Unmap()]; !ok || d.ip.IsUnspecified() {
			continue
		}
		for _, host := range []string{d.ip.String(), d.name} {
			dst := net.JoinHostPort(host, strconv.Itoa(int(portFor(ports, d.ip))))
			c, err := labPool.DialContext(t.Context(), "tcp", dst)
			if err != nil {
				t.Fatalf("control: the lab exit could not reach %s: %v", dst, err)
			}
			c.Close()
			reached++
		}
	}
	if reached == 0 {
		t.Fatal("control: no loopback listener")
	}
	// The embedding forms reach the listener on [::] from here: a refusal
	// below is the policy's, not a missing route's.
	for _, d := range dsts {
		if !embedded(d.ip) {
			continue
		}
		c, err := net.Dial("tcp", netip.AddrPortFrom(d.ip, portFor(ports, d.ip)).String())
		if err != nil {
			t.Fatalf("control: %s does not reach the listener on [::]: %v", d.ip, err)
		}
		c.Close()
		reached++
	}
	waitFor(t, "the control connections accepted", func() bool { return lb.total() == int64(reached) })

	exit := serveExit(t, Config{Resolver: fd.resolver()}) // the default policy
	pl := startPool(t, exit.addr)

	t.Run("tcp", func(t *testing.T) {
		for _, d := range dsts {
			port := strconv.Itoa(int(portFor(ports, d.ip)))
			for _, dst := range []string{net.JoinHostPort(d.ip.String(), port), net.JoinHostPort(d.name, port)} {
				c, err := pl.DialContext(t.Context(), "tcp", dst)
				if err == nil {
					c.Close()
					t.Errorf("%s (%s): the exit connected", dst, d.ip)
					continue
				}
				if st := wire.StatusOf(err); st != wire.StatusNotAllowed {
					t.Errorf("%s (%s): %v (status %v), want not allowed", dst, d.ip, err, st)
				}
			}
			if !fd.asked(d.name) {
				t.Errorf("%s was refused without being resolved: the test proves nothing", d.name)
			}
		}
		if n := lb.total() - int64(reached); n != 0 {
			t.Errorf("the loopback listeners accepted %d connections through a refusing exit", n)
		}
	})

	t.Run("udp", func(t *testing.T) {
		a := associate(t, pl)
		sent := 0
		for _, d := range dsts {
			port := portFor(ports, d.ip)
			if tr, ok := traps[listenerFor(d.ip)]; ok {
				port = uint16(tr.LocalAddr().(*net.UDPAddr).Port)
			}
			for _, dst := range []wire.Addr{{IP: d.ip, Port: port}, {Name: d.name, Port: port}} {
				if err := a.WriteTo([]byte("must not leave the exit"), dst); err != nil {
					t.Fatal(err)
				}
				sent++
			}
		}
		st := exit.exit.Stats().UDP
		waitFor(t, "every datagram judged", func() bool {
			st = exit.exit.Stats().UDP
			return st.DropPolicy+st.DropResolve+st.DropSend+st.DatagramsOut >= uint64(sent)
		})
		if st.DropPolicy != uint64(sent) || st.DatagramsOut != 0 || st.BytesOut != 0 {
			t.Errorf("stats %+v: want all %d datagrams dropped by the policy", st, sent)
		}
		// Loopback delivery is synchronous: anything sent would be
		// waiting in a trap by now.
		buf := make([]byte, 64)
		for ip, tr := range traps {
			tr.SetReadDeadline(time.Now())
			if n, from, err := tr.ReadFromUDPAddrPort(buf); err == nil {
				t.Errorf("the UDP socket on %s received %q from %v", ip, buf[:n], from)
			}
		}
	})
}

// TestSecurityAllowList: a client off the exit's allow-list gets no link,
// learns nothing of the exit beyond the refusal, and never reaches a
// target; the exit holds nothing for it.
func TestSecurityAllowList(t *testing.T) {
	tg := startTarget(t, "tcp4", "127.0.0.1:0", nil)
	allowed := newIdentity(t)
	exit := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true},
		Allow: func(id link.PeerID) bool { return id == allowed.ID() }})
	p := runPool(t, pool.Config{Link: link.Config{Identity: newIdentity(t)}, Exits: []link.ExitAddr{exit.addr},
		DialWait: 300 * time.Millisecond})

	_, err := p.DialContext(t.Context(), "tcp", "127.0.0.1:"+tg.port())
	if !errors.Is(err, pool.ErrNoExit) || wire.StatusOf(err) != wire.StatusNetworkUnreachable {
		t.Fatalf("flow from a client off the allow-list: %v, want no exit", err)
	}
	if _, err := p.Associate(t.Context()); wire.StatusOf(err) != wire.StatusNetworkUnreachable {
		t.Fatalf("association from a client off the allow-list: %v, want no exit", err)
	}
	waitFor(t, "the refusal recorded", func() bool {
		ex := p.Exits()
		return len(ex) == 1 && ex[0].LastErr != ""
	})
	info := p.Exits()[0]
	if info.Role != "" || info.Caps != nil || info.Load != 0 {
		t.Fatalf("refused client knows %+v of the exit, want nothing but the refusal", info)
	}
	if !strings.Contains(info.LastErr, "allow-list") {
		t.Fatalf("refused client's error %q does not say why", info.LastErr)
	}
	if n := tg.accepted.Load(); n != 0 {
		t.Fatalf("target saw %d connections from a refused client", n)
	}
	if st := exit.exit.Stats(); st.Clients != 0 || st.Links != 0 || st.Streams != 0 {
		t.Fatalf("exit holds %+v for a refused client", st)
	}

	// The allowed client works through the same exit.
	ok := startPoolAs(t, allowed, exit.addr)
	roundTrip(t, ok, "127.0.0.1:"+tg.port(), []byte("ping"), nil)
}
