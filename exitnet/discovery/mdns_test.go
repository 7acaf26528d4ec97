package discovery

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/mdns"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/nstest"
)

// multicastOnLoopback lets a namespace with nothing but loopback multicast.
var multicastOnLoopback = []string{"link set lo up", "link set lo multicast on", "route add 224.0.0.0/4 dev lo"}

// runGroup runs functions until the test ends, then cancels them and waits.
type runGroup struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newRunGroup(t *testing.T) *runGroup {
	g := &runGroup{}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	t.Cleanup(g.stop)
	return g
}

// stop cancels and waits for everything to end.
func (g *runGroup) stop() {
	g.cancel()
	g.wg.Wait()
}

// stopWithin stops g and fails if that takes longer than d.
func (g *runGroup) stopWithin(t *testing.T, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { g.stop(); close(done) }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.Fatalf("still running %s after cancel", d)
	}
}

type advertised struct {
	id     *link.Identity
	port   int
	caps   []string
	digest string
}

func TestMDNSTwoExitsFound(t *testing.T) {
	if !nstest.Isolated(t, multicastOnLoopback...) {
		return
	}
	exits := []advertised{
		{id: seededIdentity(t, 1), port: 7001, caps: []string{"tcp", "udp", "p2p", "fwd"}},
		{id: seededIdentity(t, 2), port: 7002, caps: []string{"tcp"}},
	}
	want := make(map[link.PeerID]advertised)
	for i := range exits {
		e := &exits[i]
		d := testDescriptor(e.id.ID())
		d.Policy = strings.Repeat("x", i) // a digest of its own
		e.digest = signTest(t, e.id, d).Digest()
		want[e.id.ID()] = *e
	}

	g := newRunGroup(t)
	advErr := make(chan error, len(exits))
	for _, e := range exits {
		g.wg.Go(func() {
			advErr <- Advertise(g.ctx, e.id.ID(), e.port, []net.IP{net.IPv4(127, 0, 0, 1)}, e.caps, e.digest)
		})
	}
	// A third responder whose TXT records are not an exit's.
	bogus, err := mdns.NewMDNSService("bogus", MDNSService, "local.", "bogus.local.", 7003,
		[]net.IP{net.IPv4(127, 0, 0, 1)}, []string{"id=nope", "v=1"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mdns.NewServer(&mdns.Config{Zone: bogus, Logger: discardLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })

	found := make(chan Found, 16)
	bad := make(chan error, 16)
	g.wg.Go(func() {
		Browse(g.ctx, 200*time.Millisecond, func(f Found) {
			select {
			case found <- f:
			default: // the test has what it needs
			}
		}, func(err error) {
			if !errors.Is(err, ErrBadAnswer) {
				t.Errorf("warn: %v", err)
			}
			select {
			case bad <- err:
			default:
			}
		})
	})

	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	seen := make(map[link.PeerID]bool)
	badSeen := false
	for len(seen) < len(exits) || !badSeen {
		select {
		case err := <-bad:
			if !strings.Contains(err.Error(), "bogus") {
				t.Errorf("bad answer reported: %v", err)
			}
			badSeen = true
		case f := <-found:
			e, ok := want[f.Exit.ID]
			if !ok {
				t.Fatalf("found an exit that was not advertised: %+v", f)
			}
			if wantAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(e.port)); f.Exit.Addr != wantAddr {
				t.Errorf("%s at %s, want %s", f.Exit.ID.Short(), f.Exit.Addr, wantAddr)
			}
			if !reflect.DeepEqual(f.Caps, e.caps) || f.Digest != e.digest || f.Seen.IsZero() {
				t.Errorf("%s: caps %q digest %q, want %q %q", f.Exit.ID.Short(), f.Caps, f.Digest, e.caps, e.digest)
			}
			seen[f.Exit.ID] = true
		case err := <-advErr:
			t.Fatalf("advertise: %v", err)
		case <-deadline.C:
			t.Fatalf("after 15 s found %d of %d exits; bad answer reported: %v", len(seen), len(exits), badSeen)
		}
	}
	g.stopWithin(t, 5*time.Second)
	for range exits {
		if err := <-advErr; err != nil {
			t.Errorf("advertise: %v", err)
		}
	}
}

// TestMDNSNoMulticast runs where mDNS cannot start, as in a container:
// Advertise fails, Browse warns once however many rounds fail, finds
// nothing, and stops when told.
func TestMDNSNoMulticast(t *testing.T) {
	if !nstest.Isolated(t, "link set lo up") {
		return
	}
	id := seededIdentity(t, 1)
	// Advertise must fail at once; should it start, it stops after 5 s.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := Advertise(ctx, id.ID(), 7001, []net.IP{net.IPv4(127, 0, 0, 1)}, nil, ""); err == nil {
		t.Error("Advertise without multicast: no error")
	} else {
		t.Logf("Advertise: %v", err)
	}

	g := newRunGroup(t)
	warned := make(chan error, 16)
	found := make(chan Found, 16)
	g.wg.Go(func() {
		Browse(g.ctx, 10*time.Millisecond, func(f Found) { found <- f }, func(err error) { warned <- err })
	})
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	select {
	case err := <-warned:
		t.Logf("warned: %v", err)
		if errors.Is(err, ErrBadAnswer) {
			t.Errorf("warned of a bad answer, want an mDNS failure: %v", err)
		}
	case f := <-found:
		t.Fatalf("found %+v", f)
	case <-timeout.C:
		t.Fatal("no warning after 10 s")
	}
	// Let a few more rounds fail (every 10 ms), then stop.
	more := time.NewTimer(200 * time.Millisecond)
	defer more.Stop()
	select {
	case err := <-warned:
		t.Errorf("warned again: %v", err)
	case f := <-found:
		t.Errorf("found %+v", f)
	case <-more.C:
	}
	g.stopWithin(t, 5*time.Second)
}

func TestAdvertiseRefusesBadArguments(t *testing.T) {
	id := seededIdentity(t, 1)
	for _, tc := range []struct {
		name   string
		port   int
		caps   []string
		digest string
	}{
		{"port 0", 0, nil, ""},
		{"port 65536", 65536, nil, ""},
		{"comma in a capability", 7001, []string{"tcp,udp"}, ""},
		{"capital capability", 7001, []string{"TCP"}, ""},
		{"empty capability", 7001, []string{""}, ""},
		{"short digest", 7001, nil, "abc"},
		{"digest not hex", 7001, nil, strings.Repeat("g", 32)},
	} {
		// The arguments are checked before anything listens, so this runs
		// anywhere and sends nothing.
		if err := Advertise(t.Context(), id.ID(), tc.port, []net.IP{net.IPv4(127, 0, 0, 1)}, tc.caps, tc.digest); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	id := seededIdentity(t, 1).ID()
	digest := strings.Repeat("0123456789abcdef", 2)
	good := func() *mdns.ServiceEntry {
		return &mdns.ServiceEntry{
			Name:       id.Short() + "._swarmvpn._tcp.local.",
			AddrV4:     net.IPv4(192, 0, 2, 7),
			Port:       7001,
			InfoFields: []string{"id=" + id.String(), "caps=tcp,udp,p2p,fwd", "d=" + digest, "v=1"},
		}
	}
	now := time.Now()
	f, err := parseAnswer(good(), false, now)
	wantF := Found{
		Exit:   link.ExitAddr{ID: id, Addr: "192.0.2.7:7001"},
		Caps:   []string{"tcp", "udp", "p2p", "fwd"},
		Digest: digest,
		Seen:   now,
	}
	if err != nil || !reflect.DeepEqual(f, wantF) {
		t.Fatalf("parseAnswer = %+v, %v\nwant %+v", f, err, wantF)
	}

	for _, tc := range []struct {
		name       string
		change     func(*mdns.ServiceEntry)
		loopbackOK bool
		addr       string // "" means the answer is bad
	}{
		{"no caps, no digest", func(e *mdns.ServiceEntry) { e.InfoFields = []string{"id=" + id.String(), "caps=", "v=1"} }, false, "192.0.2.7:7001"},
		{"fields in another order", func(e *mdns.ServiceEntry) { e.InfoFields = []string{"v=1", "id=" + id.String()} }, false, "192.0.2.7:7001"},
		{"unknown capability kept", func(e *mdns.ServiceEntry) { e.InfoFields[1] = "caps=tcp,later-cap" }, false, "192.0.2.7:7001"},
		{"IPv6 only", func(e *mdns.ServiceEntry) {
			e.AddrV4 = nil
			e.AddrV6IPAddr = &net.IPAddr{IP: net.ParseIP("2001:db8::7")}
		}, false, "[2001:db8::7]:7001"},
		{"IPv6 link-local with zone", func(e *mdns.ServiceEntry) {
			e.AddrV4 = nil
			e.AddrV6IPAddr = &net.IPAddr{IP: net.ParseIP("fe80::7"), Zone: "eth0"}
		}, false, "[fe80::7%eth0]:7001"},
		{"unusable IPv4, usable IPv6", func(e *mdns.ServiceEntry) {
			e.AddrV4 = net.IPv4zero
			e.AddrV6IPAddr = &net.IPAddr{IP: net.ParseIP("2001:db8::7")}
		}, false, "[2001:db8::7]:7001"},
		{"loopback on loopback", func(e *mdns.ServiceEntry) { e.AddrV4 = net.IPv4(127, 0, 0, 1) }, true, "127.0.0.1:7001"},

		{"loopback elsewhere", func(e *mdns.ServiceEntry) { e.AddrV4 = net.IPv4(127, 0, 1, 1) }, false, ""},
		{"IPv6 link-local without zone", func(e *mdns.ServiceEntry) {
			e.AddrV4 = nil
			e.AddrV6IPAddr = &net.IPAddr{IP: net.ParseIP("fe80::7")}
		}, false, ""},
		{"unspecified", func(e *mdns.ServiceEntry) { e.AddrV4 = net.IPv4zero }, false, ""},
		{"multicast", func(e *mdns.ServiceEntry) { e.AddrV4 = net.IPv4(224, 0, 0, 251) }, false, ""},
		{"no address", func(e *mdns.ServiceEntry) { e.AddrV4 = nil }, false, ""},
		{"port 0", func(e *mdns.ServiceEntry) { e.Port = 0 }, false, ""},
		{"no id", func(e *mdns.ServiceEntry) { e.InfoFields = e.InfoFields[1:] }, false, ""},
		{"bad id", func(e *mdns.ServiceEntry) { e.InfoFields[0] = "id=" + id.String()[1:] }, false, ""},
		{"id twice", func(e *mdns.ServiceEntry) { e.InfoFields = append(e.InfoFields, "id="+id.String()) }, false, ""},
		{"no version", func(e *mdns.ServiceEntry) { e.InfoFields = e.InfoFields[:3] }, false, ""},
		{"version 2", func(e *mdns.ServiceEntry) { e.InfoFields[3] = "v=2" }, false, ""},
		{"not key=value", func(e *mdns.ServiceEntry) { e.InfoFields = append(e.InfoFields, "junk") }, false, ""},
		{"empty capability", func(e *mdns.ServiceEntry) { e.InfoFields[1] = "caps=tcp,,udp" }, false, ""},
		{"capability with a quote", func(e *mdns.ServiceEntry) { e.InfoFields[1] = `caps=tcp\"` }, false, ""},
		{"bad digest", func(e *mdns.ServiceEntry) { e.InfoFields[2] = "d=" + strings.ToUpper(digest) }, false, ""},
	} {
		e := good()
		tc.change(e)
		f, err := parseAnswer(e, tc.loopbackOK, now)
		switch {
		case tc.addr == "" && !errors.Is(err, ErrBadAnswer):
			t.Errorf("%s: %+v, %v; want ErrBadAnswer", tc.name, f, err)
		case tc.addr != "" && (err != nil || f.Exit.Addr != tc.addr || f.Exit.ID != id):
			t.Errorf("%s: %+v, %v; want %s", tc.name, f, err, tc.addr)
		}
	}
}

// FuzzParseAnswer feeds parseAnswer what any host on the LAN may send: TXT
// fields (NUL-separated here), a port and addresses. An answer it accepts
// names the exit by the ID in its TXT record, at a usable address and the
// answer's port.
func FuzzParseAnswer(f *testing.F) {
	id := seededIdentity(f, 1).ID()
	digest := strings.Repeat("0123456789abcdef", 2)
	f.Add("id="+id.String()+"\x00caps=tcp,udp,p2p,fwd\x00d="+digest+"\x00v=1", 7001, []byte{192, 0, 2, 7}, []byte(nil), "", false)
	f.Add("v=1\x00id="+id.String(), 1, []byte(nil), []byte(net.ParseIP("fe80::7").To16()), "eth0", false)
	f.Add("v=1\x00id="+id.String()+"\x00caps=", 65535, []byte{127, 0, 0, 1}, []byte(nil), "", true)
	f.Add("v=1\x00v=1\x00junk", 0, []byte{0, 0, 0, 0}, []byte(net.ParseIP("::ffff:1.2.3.4").To16()), "", false)
	f.Fuzz(func(t *testing.T, txt string, port int, v4, v6 []byte, zone string, loopbackOK bool) {
		e := &mdns.ServiceEntry{Name: "x._swarmvpn._tcp.local.", Port: port, AddrV4: v4,
			InfoFields: strings.Split(txt, "\x00")}
		if v6 != nil {
			e.AddrV6IPAddr = &net.IPAddr{IP: v6, Zone: zone}
		}
		now := time.Now()
		found, err := parseAnswer(e, loopbackOK, now)
		if err != nil {
			if !errors.Is(err, ErrBadAnswer) {
				t.Fatalf("error %v does not wrap ErrBadAnswer", err)
			}
			return
		}
		ap, err := netip.ParseAddrPort(found.Exit.Addr)
		if err != nil {
			t.Fatalf("accepted answer gives address %q: %v", found.Exit.Addr, err)
		}
		ip := ap.Addr()
		if int(ap.Port()) != port || port == 0 || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() ||
			(ip.IsLoopback() && !loopbackOK) || (ip.IsLinkLocalUnicast() && ip.Zone() == "") || ip.Is4In6() {
			t.Fatalf("accepted answer at %v (port %d, loopbackOK %v)", ap, port, loopbackOK)
		}
		// The ID's text may differ from its canonical form (case, unused
		// trailing bits): compare the IDs.
		named := slices.ContainsFunc(e.InfoFields, func(f string) bool {
			s, ok := strings.CutPrefix(f, "id=")
			pid, err := link.ParsePeerID(s)
			return ok && err == nil && pid == found.Exit.ID
		})
		if !named || !slices.Contains(e.InfoFields, "v="+mdnsTXTVersion) {
			t.Fatalf("accepted %+v from TXT %q", found, e.InfoFields)
		}
		for _, c := range found.Caps {
			if !isCap(c) {
				t.Fatalf("accepted capability %q", c)
			}
		}
		if !found.Seen.Equal(now) {
			t.Fatalf("seen %v, want %v", found.Seen, now)
		}
	})
}
