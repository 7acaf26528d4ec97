package exit

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/nstest"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// TestReachAllowed: a reach request is answered for the address the
// asker's link comes from (IPv4: that one only, mapped or not), and for
// IPv6 for another address of its /64 as well, but not of a /64 that holds
// IPv4 forms (NAT64, Teredo, 6to4, ::/64); only public addresses unless
// the exit allows private ones.
func TestReachAllowed(t *testing.T) {
	mk := func(pol *policy.Policy) *Server {
		e, err := New(Config{Link: link.Config{Identity: newIdentity(t)}, Policy: pol})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	strict, lab := mk(nil), mk(&policy.Policy{AllowPrivate: true})
	for _, tt := range []struct {
		name          string
		dst, observed string
		strict, lab   reachScope
	}{
		{"v4 exact", "93.184.216.34", "93.184.216.34", reachObserved, reachObserved},
		{"v4 same /24", "93.184.216.35", "93.184.216.34", reachRefused, reachRefused},
		{"v4 mapped target", "::ffff:93.184.216.34", "93.184.216.34", reachObserved, reachObserved},
		{"v4 mapped observed", "93.184.216.34", "::ffff:93.184.216.34", reachObserved, reachObserved},
		{"v4 mapped, another address", "::ffff:93.184.216.35", "::ffff:93.184.216.34", reachRefused, reachRefused},
		{"v4 target, v6 observed", "93.184.216.34", "2a01:4f8:1:2::5", reachRefused, reachRefused},
		{"v4 private exact", "192.168.1.5", "192.168.1.5", reachRefused, reachObserved},
		{"v6 exact", "2a01:4f8:1:2::5", "2a01:4f8:1:2::5", reachObserved, reachObserved},
		{"v6 same /64", "2a01:4f8:1:2:1c3a:99ff:fe12:3456", "2a01:4f8:1:2:d8e1:4a2b:7c10:9f3e", reachSubnet, reachSubnet},
		{"v6 other /64", "2a01:4f8:1:3::5", "2a01:4f8:1:2::5", reachRefused, reachRefused},
		{"v6 same /56, other /64", "2a01:4f8:1:20::5", "2a01:4f8:1:21::5", reachRefused, reachRefused},
		{"v6 ULA same /64", "fd00:1::2", "fd00:1::1", reachRefused, reachSubnet},
		{"v6 ULA exact", "fd00:1::1", "fd00:1::1", reachRefused, reachObserved},
		{"v6 public target, ULA observed", "2a01:4f8:1:2::5", "fd00:1::1", reachRefused, reachRefused},
		{"v6 loopback", "::1", "::1", reachRefused, reachObserved},
		{"::/64 holds IPv4 forms", "::ffff:0:5db8:d823", "::1", reachRefused, reachRefused},
		{"NAT64", "64:ff9b::808:808", "64:ff9b::5db8:d822", reachRefused, reachRefused},
		{"NAT64 /64 around the /96", "64:ff9b::808:808", "64:ff9b::1:0:0:1", reachRefused, reachRefused},
		{"Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd3", "2001:0:4136:e378:8000:63bf:3fff:fdd2", reachRefused, reachRefused},
		{"6to4", "2002:5db8:d822::2", "2002:5db8:d822::1", reachRefused, reachRefused},
		{"link-local on another link", "fe80::2", "fe80::1%eth0", reachRefused, reachRefused},
		{"no target", "", "2a01:4f8:1:2::5", reachRefused, reachRefused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst, _ := netip.ParseAddr(tt.dst)
			obs := netip.MustParseAddr(tt.observed)
			d, o := wire.Addr{IP: dst, Port: 7843}, wire.Addr{IP: obs, Port: 50000}
			if got := strict.reachAllowed(d, o); got != tt.strict {
				t.Errorf("strict exit: reachAllowed(%v, %v) = %d, want %d", d, o, got, tt.strict)
			}
			if got := lab.reachAllowed(d, o); got != tt.lab {
				t.Errorf("lab exit: reachAllowed(%v, %v) = %d, want %d", d, o, got, tt.lab)
			}
		})
	}
}

// TestReachSubnet: an asker whose link comes from fd00:1::1 has a lab exit
// dial another address of its /64, fd00:1::2. Where its own key answers,
// the answer is OK; wherever else (a port that refuses, something that is
// not the asker, an address where no host answers) it is one and the same
// failure, given only when the dial's whole time is up, and never the
// dial's own status, which the observed address itself still gets.
// Another /64 is refused and dials nothing.
//
// It runs in a network namespace of its own that holds both addresses.
func TestReachSubnet(t *testing.T) {
	if !nstest.Isolated(t, "link set lo up", "addr add fd00:1::1/64 dev lo nodad", "addr add fd00:1::2/64 dev lo nodad") {
		return
	}
	// Both addresses are the lab exit's own too: rules naming them lift
	// that, as an operator's would for a LAN test.
	var rules []policy.Rule
	for _, r := range []string{"allow fd00:1::1/128", "allow fd00:1::2/128", "allow fd00:1::3/128"} {
		rule, err := policy.ParseRule(r)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, rule)
	}
	helper := serveExitOn(t, Config{Policy: &policy.Policy{AllowPrivate: true, Rules: rules}}, "[fd00:1::1]:0")

	closedPort := func(host string) string {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(ln.Addr().String())
		ln.Close()
		return p
	}
	stranger := startTarget(t, "tcp6", "[fd00:1::2]:0", []byte("not the asker"))
	elsewhere := startTarget(t, "tcp6", "[::1]:0", nil)

	// ask sends one reach request as id over a link of its own, which the
	// helper sees come from fd00:1::1, and returns the answer and how long
	// it took.
	ask := func(t *testing.T, id *link.Identity, dst string) (wire.Status, time.Duration) {
		t.Helper()
		sess, st := linkStream(t, link.Config{Identity: id}, helper.addr)
		defer sess.Close()
		defer st.Close()
		start := time.Now()
		resp, err := wire.Call(t.Context(), st, wire.Request{Kind: wire.KindReach, Dst: mustWireAddr(t, dst)}, 3*reachTimeout)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("reach %s: %v", dst, err)
		}
		if resp.Bound.IP != netip.MustParseAddr("fd00:1::1") {
			t.Fatalf("reach %s: observed %v, want fd00:1::1", dst, resp.Bound)
		}
		io.Copy(io.Discard, st)
		return resp.Status, took
	}

	// The asker's own key at the other address: OK.
	id := newIdentity(t)
	asker := serveExitOn(t, Config{Link: link.Config{Identity: id}}, "[fd00:1::2]:0")
	if s, _ := ask(t, id, asker.addr.Addr); s != wire.StatusOK {
		t.Fatalf("reach the asker's own key in its /64: %v, want OK", s)
	}
	// Another /64: refused, nothing dialled.
	if s, _ := ask(t, newIdentity(t), "[::1]:"+elsewhere.port()); s != wire.StatusNotAllowed {
		t.Fatalf("reach another /64: %v, want not allowed", s)
	}
	// The observed address itself still gets the dial's own status.
	if s, _ := ask(t, newIdentity(t), "[fd00:1::1]:"+closedPort("fd00:1::1")); s != wire.StatusConnectionRefused {
		t.Fatalf("reach the observed address, a closed port: %v, want connection refused", s)
	}

	// Three different failures in the /64, at once (one per asker; the
	// exit answers four at a time), all the same answer after the same
	// time.
	var wg sync.WaitGroup
	for _, dst := range []string{
		"[fd00:1::2]:" + closedPort("fd00:1::2"), // refuses at once
		"[fd00:1::2]:" + stranger.port(),         // accepts, but is not the asker
		"[fd00:1::3]:7843",                       // no host there
	} {
		wg.Go(func() {
			s, took := ask(t, newIdentity(t), dst)
			if s != reachSubnetFailure {
				t.Errorf("reach %s in the asker's /64: %v, want %v whatever the dial found", dst, s, reachSubnetFailure)
			}
			if took < reachTimeout {
				t.Errorf("reach %s in the asker's /64: answered after %v, before the dial's time (%v) was up", dst, took, reachTimeout)
			}
		})
	}
	wg.Wait()
	if n := elsewhere.accepted.Load(); n != 0 {
		t.Fatalf("a reach request made the exit connect to another /64 %d times", n)
	}
	if st := helper.exit.Stats().Reach; st.Answered != 1 || st.AnsweredSubnet != 4 || st.RefusedAddr != 1 || st.RefusedBusy != 0 {
		t.Fatalf("reach stats %+v, want 1 answered, 4 in the subnet, 1 refused", st)
	}
}
