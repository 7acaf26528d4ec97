package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/mdns"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

// MDNSService is the DNS-SD service type under which exits advertise on a
// LAN.
const MDNSService = "_swarmvpn._tcp"

// MDNSPort is the port mDNS (RFC 6762) queries and answers use.
const MDNSPort = 5353

// ErrBadAnswer is wrapped by the errors Browse passes to warn for answers it
// ignores, so that a caller can count them apart from mDNS failing.
var ErrBadAnswer = errors.New("bad mDNS answer")

const (
	mdnsDomain       = "local"
	mdnsTXTVersion   = "1"
	defaultMDNSEvery = 10 * time.Second
	maxMDNSQueryWait = time.Second
	maxCapLen        = 16
)

// discardLog silences hashicorp/mdns, which logs to the standard logger
// unless given one.
var discardLog = log.New(io.Discard, "", 0)

// Advertise announces the exit on the LAN until ctx ends, then shuts the
// responder down and returns nil. It returns an error at once if its
// arguments are invalid or mDNS cannot start (no multicast route, no
// address); a caller logs that as a warning, since the exit works without
// it.
//
// The service instance is named by the short form of id, on the host name
// "swarmvpn-<short id>.local.", with port and the TXT records "id=<peer
// id>", "caps=<caps joined by commas>", "d=<digest>" (left out when digest
// is empty) and "v=1". ips are the addresses announced; nil means the
// addresses of the host's up, multicast-capable interfaces (loopback only
// when there is nothing else). caps are lowercase words, usually
// Descriptor.Caps; digest is SignedDescriptor.Digest. TXT records are fixed
// for the run: to announce a new digest, cancel and Advertise again.
//
// The responder listens on the system's default multicast interface only.
// hashicorp/mdns offers no way to wait for its two receive goroutines: they
// end as soon as Shutdown has closed their sockets, shortly after Advertise
// returns.
func Advertise(ctx context.Context, id link.PeerID, port int, ips []net.IP, caps []string, digest string) error {
	txt, err := mdnsTXT(id, port, caps, digest)
	if err != nil {
		return fmt.Errorf("mdns advertise: %w", err)
	}
	if len(ips) == 0 {
		if ips, err = hostIPs(); err != nil {
			return fmt.Errorf("mdns advertise: %w", err)
		}
	}
	host := "swarmvpn-" + id.Short() + "." + mdnsDomain + "."
	zone, err := mdns.NewMDNSService(id.Short(), MDNSService, mdnsDomain+".", host, port, ips, txt)
	if err != nil {
		return fmt.Errorf("mdns advertise: %w", err)
	}
	srv, err := mdns.NewServer(&mdns.Config{Zone: zone, Logger: discardLog})
	if err != nil {
		return fmt.Errorf("mdns advertise: %w", err)
	}
	<-ctx.Done()
	srv.Shutdown()
	return nil
}

// ResponderAddrs returns where Advertise's responder receives while it
// runs: the mDNS port on every IPv4 and every IPv6 address. hashicorp/mdns
// joins the multicast groups on sockets bound to the unspecified addresses
// (shared, by SO_REUSEADDR, with any other responder on the host), so a
// unicast datagram to port 5353 of loopback or of any of the host's
// addresses reaches it too, and a query with the unicast-response bit set
// is answered to its sender.
func ResponderAddrs() []netip.AddrPort {
	return []netip.AddrPort{
		netip.AddrPortFrom(netip.IPv4Unspecified(), MDNSPort),
		netip.AddrPortFrom(netip.IPv6Unspecified(), MDNSPort),
	}
}

// mdnsTXT validates Advertise's arguments and returns the TXT records.
func mdnsTXT(id link.PeerID, port int, caps []string, digest string) ([]string, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("port %d is not a port from 1 to 65535", port)
	}
	for _, c := range caps {
		if !isCap(c) {
			return nil, fmt.Errorf("capability %q: want 1 to %d lowercase letters, digits or '-'", c, maxCapLen)
		}
	}
	if digest != "" && !isDigest(digest) {
		return nil, fmt.Errorf("digest %q: want 32 lowercase hex characters, as from SignedDescriptor.Digest", digest)
	}
	txt := []string{"id=" + id.String(), "caps=" + strings.Join(caps, ",")}
	if digest != "" {
		txt = append(txt, "d="+digest)
	}
	return append(txt, "v="+mdnsTXTVersion), nil
}

func isCap(s string) bool {
	if s == "" || len(s) > maxCapLen {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func isDigest(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// multicastInterfaces returns the interfaces that are up and can multicast,
// loopback included when its multicast flag is on.
func multicastInterfaces() ([]net.Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var ifs []net.Interface
	for _, ifi := range all {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 {
			ifs = append(ifs, ifi)
		}
	}
	return ifs, nil
}

// hostIPs returns the unicast addresses of the multicast interfaces, not
// link-local ones (an A or AAAA record carries no zone); loopback addresses
// only if there is nothing else.
func hostIPs() ([]net.IP, error) {
	ifs, err := multicastInterfaces()
	if err != nil {
		return nil, err
	}
	var ips, loopback []net.IP
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			switch {
			case !ok:
			case n.IP.IsLoopback():
				loopback = append(loopback, n.IP)
			case n.IP.IsGlobalUnicast():
				ips = append(ips, n.IP)
			}
		}
	}
	if len(ips) == 0 {
		ips = loopback
	}
	if len(ips) == 0 {
		return nil, errors.New("no interface that is up and can multicast has an address to announce")
	}
	return ips, nil
}

// Found is one exit seen on the LAN.
type Found struct {
	// Exit is the exit's peer ID and the address it answered with.
	Exit link.ExitAddr
	// Caps are the capabilities its TXT record claims (see CapTCP).
	Caps []string
	// Digest is the digest of its current descriptor, "" if it gave none.
	Digest string
	// Seen is when the answer arrived (to the end of its query round).
	Seen time.Time
}

// Browse looks for exits on the LAN until ctx ends: it queries at once and
// then once per interval every (0 means 10 s) on each interface that is up and can
// multicast, loopback included when its multicast flag is on, or on the
// default interface when no interface qualifies. For each exit that answered
// a round with a valid TXT record and a usable address, it calls found,
// once per round and exit address. A loopback address is accepted only in
// an answer on a loopback interface.
//
// Browse calls warn, if it is not nil, with an error wrapping ErrBadAnswer
// for each answer it ignores, and with another error when mDNS cannot run
// on any interface (no multicast route, a container): once, until a round
// works again. Either way it goes on with the next round. found and warn are
// called from Browse's goroutine, never at the same time.
//
// Browse returns after every query it started has ended: within about a
// second of ctx ending, since hashicorp/mdns waits out a query's window
// (one second, or every/2 if shorter) even when cancelled.
func Browse(ctx context.Context, every time.Duration, found func(Found), warn func(error)) {
	if every <= 0 {
		every = defaultMDNSEvery
	}
	wait := min(maxMDNSQueryWait, every/2)
	if found == nil {
		found = func(Found) {}
	}
	if warn == nil {
		warn = func(error) {}
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	failing := false
	for {
		answers, err := browseRound(ctx, wait)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !failing:
			warn(err)
			failing = true
		case err == nil:
			failing = false
		}
		now := time.Now()
		seen := make(map[link.ExitAddr]bool)
		for _, a := range answers {
			f, err := parseAnswer(a.entry, a.loopback, now)
			if err != nil {
				warn(err)
				continue
			}
			if !seen[f.Exit] {
				seen[f.Exit] = true
				found(f)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// mdnsAnswer is one complete answer and whether it came to a query on a
// loopback interface.
type mdnsAnswer struct {
	entry    *mdns.ServiceEntry
	loopback bool
}

// browseRound queries every multicast interface at once and returns the
// answers, with an error only when no query could run.
func browseRound(ctx context.Context, wait time.Duration) ([]mdnsAnswer, error) {
	ifs, err := multicastInterfaces()
	if err != nil {
		return nil, fmt.Errorf("mdns browse: %w", err)
	}
	type target struct {
		ifi    net.Interface
		v4, v6 bool
	}
	var targets []target
	for _, ifi := range ifs {
		if v4, v6 := ipFamilies(&ifi); v4 || v6 {
			targets = append(targets, target{ifi, v4, v6})
		}
	}
	if len(targets) == 0 {
		got, err := mdnsQuery(ctx, nil, true, true, wait)
		if err != nil {
			return nil, fmt.Errorf("mdns browse: no interface with an address can multicast, and the default interface: %w", err)
		}
		answers := make([]mdnsAnswer, len(got))
		for i, e := range got {
			answers[i] = mdnsAnswer{entry: e, loopback: true}
		}
		return answers, nil
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		answers []mdnsAnswer
		errs    []string
	)
	for _, tg := range targets {
		wg.Go(func() {
			got, err := mdnsQuery(ctx, &tg.ifi, tg.v4, tg.v6, wait)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, tg.ifi.Name+": "+err.Error())
				return
			}
			for _, e := range got {
				answers = append(answers, mdnsAnswer{entry: e, loopback: tg.ifi.Flags&net.FlagLoopback != 0})
			}
		})
	}
	wg.Wait()
	if len(errs) == len(targets) {
		slices.Sort(errs)
		return nil, errors.New("mdns browse: " + strings.Join(errs, "; "))
	}
	return answers, nil
}

// ipFamilies reports whether ifi has IPv4 and IPv6 addresses, so that a
// query there uses only the families it can answer on.
func ipFamilies(ifi *net.Interface) (v4, v6 bool) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false, false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if n.IP.To4() != nil {
				v4 = true
			} else {
				v6 = true
			}
		}
	}
	return v4, v6
}

// mdnsQuery runs one hashicorp/mdns query on ifi (nil: the default
// interface) and returns the complete answers. When both families fail
// together, it tries IPv4 alone: the library gives up on a query if sending
// on either family fails, as IPv6 does where it has no multicast route.
func mdnsQuery(ctx context.Context, ifi *net.Interface, v4, v6 bool, wait time.Duration) ([]*mdns.ServiceEntry, error) {
	got, err := mdnsQueryOnce(ctx, ifi, v4, v6, wait)
	if err != nil && v4 && v6 && ctx.Err() == nil {
		got, err = mdnsQueryOnce(ctx, ifi, true, false, wait)
	}
	return got, err
}

func mdnsQueryOnce(ctx context.Context, ifi *net.Interface, v4, v6 bool, wait time.Duration) ([]*mdns.ServiceEntry, error) {
	// The library drops an answer it cannot hand over at once, so a
	// goroutine keeps the channel drained. It may reuse an entry it has
	// sent when later records arrive, so entries are read only after the
	// query has returned.
	entries := make(chan *mdns.ServiceEntry, 16)
	var got []*mdns.ServiceEntry
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range entries {
			got = append(got, e)
		}
	}()
	err := mdns.QueryContext(ctx, &mdns.QueryParam{
		Service:     MDNSService,
		Domain:      mdnsDomain,
		Timeout:     wait,
		Interface:   ifi,
		Entries:     entries,
		DisableIPv4: !v4,
		DisableIPv6: !v6,
		Logger:      discardLog,
	})
	close(entries)
	<-done
	return got, err
}

// parseAnswer checks one answer's TXT records and address.
func parseAnswer(e *mdns.ServiceEntry, loopbackOK bool, now time.Time) (Found, error) {
	bad := func(format string, a ...any) (Found, error) {
		return Found{}, fmt.Errorf("%w from %q: %s", ErrBadAnswer, e.Name, fmt.Sprintf(format, a...))
	}
	txt := make(map[string]string, len(e.InfoFields))
	for _, f := range e.InfoFields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return bad("TXT record %q is not KEY=VALUE", f)
		}
		if _, dup := txt[k]; dup {
			return bad("TXT key %q twice", k)
		}
		txt[k] = v
	}
	if v := txt["v"]; v != mdnsTXTVersion {
		return bad("TXT version %q, want %q", v, mdnsTXTVersion)
	}
	id, err := link.ParsePeerID(txt["id"])
	if err != nil {
		return bad("%v", err)
	}
	var caps []string
	if c := txt["caps"]; c != "" {
		caps = strings.Split(c, ",")
		if slices.ContainsFunc(caps, func(c string) bool { return !isCap(c) }) {
			return bad("capabilities %q", c)
		}
	}
	digest, ok := txt["d"]
	if ok && !isDigest(digest) {
		return bad("digest %q", digest)
	}
	if e.Port <= 0 || e.Port > 65535 {
		return bad("port %d", e.Port)
	}
	ip, ok := answerAddr(e, loopbackOK)
	if !ok {
		return bad("no usable address")
	}
	return Found{
		Exit:   link.ExitAddr{ID: id, Addr: netip.AddrPortFrom(ip, uint16(e.Port)).String()},
		Caps:   caps,
		Digest: digest,
		Seen:   now,
	}, nil
}

// answerAddr picks the answer's IPv4 address if usable, else its IPv6
// address: neither unspecified nor multicast, loopback only if loopbackOK,
// and link-local IPv6 only with the zone it arrived on.
func answerAddr(e *mdns.ServiceEntry, loopbackOK bool) (netip.Addr, bool) {
	usable := func(ip netip.Addr) bool {
		return ip.IsValid() && !ip.IsUnspecified() && !ip.IsMulticast() &&
			(loopbackOK || !ip.IsLoopback()) && (!ip.IsLinkLocalUnicast() || ip.Zone() != "")
	}
	if ip, ok := netip.AddrFromSlice(e.AddrV4); ok && usable(ip.Unmap()) {
		return ip.Unmap(), true
	}
	if e.AddrV6IPAddr != nil {
		if ip, ok := netip.AddrFromSlice(e.AddrV6IPAddr.IP); ok {
			if ip.Is4In6() {
				ip = ip.Unmap()
			} else if ip.IsLinkLocalUnicast() {
				ip = ip.WithZone(e.AddrV6IPAddr.Zone)
			}
			if usable(ip) {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}
