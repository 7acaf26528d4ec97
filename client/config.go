package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/listener"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

// DefaultSOCKS is where SOCKS5 listens when Config.SOCKS is empty.
const DefaultSOCKS = "127.0.0.1:1080"

// Config configures a Client. The zero value of a field means its default.
type Config struct {
	// Identity is the client's key; its peer ID is what exits see.
	// Required.
	Identity *link.Identity
	// Exits are the exits the user named. More come from the cache in
	// StateDir, from mDNS when MDNS is set, from the DHT when DHT is set,
	// and from linked exits. An exit with an empty Addr (named by peer ID
	// alone) is looked up on the DHT.
	Exits []link.ExitAddr
	// Hops is 1 (the default): flows go to an exit directly; or 2: each
	// exit is reached through a relay, another exit, so that no peer sees
	// both the client's address and its destinations.
	Hops int
	// Relays, with Hops 2, are the only relays used (--relay); empty: any
	// known exit that relays.
	Relays []link.ExitAddr
	// MDNS looks for exits on the LAN. Default off.
	MDNS bool
	// DHT, when set, finds exits on the BitTorrent Mainline DHT (see
	// dht.go). Nil: off.
	DHT *DHT
	// Trust, when not empty, restricts the client to the exits with these
	// peer IDs, whatever told of them.
	Trust []link.PeerID
	// StateDir keeps the known-exits cache (exits.json) and the control
	// socket (control.sock). Empty: no cache and no control socket.
	StateDir string

	// SOCKS is the SOCKS5 listen address, HOST:PORT. Default DefaultSOCKS.
	// Beyond loopback it needs SOCKSUser and SOCKSPass.
	SOCKS string
	// SOCKSUser and SOCKSPass, both or neither, require SOCKS5
	// username/password authentication. Default none.
	SOCKSUser, SOCKSPass string
	// HTTP is the HTTP proxy's listen address, HOST:PORT, on loopback
	// only (it has no password). Empty or "off": no HTTP proxy.
	HTTP string

	// Forward says where connections arriving at the exit's forwarded
	// port go. "" or "auto": 127.0.0.1 on the forwarded port's own
	// number, and an exit lending no port is still used; "off": no port
	// is asked for; IP:PORT: that address, and only exits that lend a
	// port are used.
	Forward string
	// ForwardPort is the port to ask the exit for (it lends another when
	// that one is taken). Default 0: any. Set, only exits that lend a
	// port are used.
	ForwardPort uint16
	// PortFile, when set, receives the forwarded port each time it is
	// obtained.
	PortFile string
	// OnPortHook, when set, is run with sh -c each time the forwarded port
	// is obtained; {{PORT}} becomes the port.
	OnPortHook string
	// QBittorrent, when set, has its listen port set to the forwarded port,
	// and put back when it changes.
	QBittorrent *portfwd.QBittorrent
	// OnPort, when set, is called from Run with each forwarded port after
	// it has been announced. It must not block for long.
	OnPort func(port uint16)
	// NoAnnounceFix turns off the rewriting of tracker announces. By
	// default, while a port is forwarded, the port that torrent clients
	// announce to HTTP trackers (through the SOCKS5 and HTTP proxies) and
	// to UDP trackers (BEP 15, through UDP associations) becomes the
	// forwarded port, and ip=/ipv4=/ipv6= parameters naming the user's own
	// addresses are removed. HTTPS announces cannot be seen.
	NoAnnounceFix bool

	// Tuning shortens or lengthens the pool's waits; tests shorten them.
	Tuning Tuning
	// Log receives the client's events. Nil discards them.
	Log *slog.Logger
}

// Tuning holds the pool's waits. The zero value of a field means the
// pool's default (see pool.Config).
type Tuning struct {
	// DialWait is how long a new flow waits for a link being established.
	DialWait time.Duration
	// MinBackoff and MaxBackoff bound the back-off between attempts to
	// reach an exit.
	MinBackoff, MaxBackoff time.Duration
	// ProbeEvery is how often the exit is asked to probe the forwarded
	// port (and 10s after each new port, or ProbeEvery if shorter).
	// Default 5m.
	ProbeEvery time.Duration
	// TargetEvery is how often the forward target is checked for a TCP
	// listener. Default 30s.
	TargetEvery time.Duration
}

// httpOff reports whether the HTTP proxy is off.
func (c Config) httpOff() bool { return c.HTTP == "" || c.HTTP == "off" }

// forwardOff reports whether no forwarded port is asked for.
func (c Config) forwardOff() bool { return c.Forward == "off" }

// Check validates cfg without opening or creating anything (it reads the
// exits cache in StateDir): New calls it, and a caller may call it first,
// before it creates the identity key, so that bad settings leave nothing
// behind. It does not check Identity, which New requires.
func (c Config) Check() error {
	if len(c.Exits) == 0 && !c.MDNS && c.DHT == nil && !c.hasCached() {
		return errors.New("no exit given: pass --exit PEERID@HOST:PORT (the line 'swarmvpn exit' prints on the exit's machine), or leave mDNS or the DHT on to find exits")
	}
	for _, e := range c.Exits {
		if e.Addr == "" && c.DHT == nil {
			return fmt.Errorf("--exit %s has no address, and finding it by peer ID needs the DHT: give PEERID@HOST:PORT, or leave --dht on", e.ID)
		}
	}
	if c.DHT != nil && c.DHT.NoDirect && len(c.Exits) == 0 && !c.MDNS && !c.hasCached() {
		return errors.New("--dht-direct=false with no exit to go through: give an --exit, leave mDNS on, or allow direct DHT queries for the first lookup")
	}
	if c.Hops < 0 || c.Hops > 2 {
		return fmt.Errorf("--hops %d: want 1 (straight to an exit) or 2 (through a relay)", c.Hops)
	}
	if len(c.Relays) > 0 && c.Hops != 2 {
		return errors.New("--relay is for two-hop paths: add --hops 2")
	}
	if (c.SOCKSUser == "") != (c.SOCKSPass == "") {
		return errors.New("--socks-user and --socks-pass go together: give both, or neither for no authentication")
	}
	http := c.HTTP
	if c.httpOff() {
		http = "off"
	}
	if err := checkExposure(cmp.Or(c.SOCKS, DefaultSOCKS), http, c.SOCKSUser != ""); err != nil {
		return err
	}
	if !c.forwardOff() {
		if _, err := forwardTarget(c.Forward, nil); err != nil {
			return err
		}
	}
	return nil
}

// hasCached reports whether the cache in StateDir holds an exit.
func (c Config) hasCached() bool {
	k := c.cache()
	return k != nil && len(k.Load()) > 0
}

// cache is the known-exits cache in StateDir; nil without a StateDir.
func (c Config) cache() *discovery.Cache {
	if c.StateDir == "" {
		return nil
	}
	return &discovery.Cache{Path: filepath.Join(c.StateDir, "exits.json"), Log: c.Log}
}

// checkExposure refuses local proxies that other machines could reach and
// use without a password: anyone on the LAN (or the internet) could then
// send traffic out through the user's exit, under the user's peer ID. SOCKS5
// may listen beyond loopback with a username and password; the HTTP proxy
// has no authentication, so it listens on loopback only.
func checkExposure(socks, http string, socksAuth bool) error {
	if !socksAuth && !listener.Loopback(socks) {
		return fmt.Errorf("--socks %s would let anyone who reaches this address use your exit: "+
			"listen on a loopback address (127.0.0.1:1080), or set --socks-user and --socks-pass", socks)
	}
	if http != "off" && http != "" && !listener.Loopback(http) {
		return fmt.Errorf("--http %s would let anyone who reaches this address use your exit, and the HTTP proxy has no password: "+
			"listen on a loopback address (127.0.0.1:8118) and reach it from other machines through SSH (ssh -L 8118:127.0.0.1:8118 HOST), or use --http off", http)
	}
	return nil
}

// forwardTarget returns the dialer for inbound connections: to the fixed
// address --forward names, or with "auto" to 127.0.0.1 on the port the
// connection arrived at, which is the number the torrent client listens on.
func forwardTarget(spec string, forwarded func() uint16) (func(context.Context, netip.AddrPort) (net.Conn, error), error) {
	if spec == "auto" || spec == "" {
		return func(ctx context.Context, remote netip.AddrPort) (net.Conn, error) {
			addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), forwarded())
			return portfwd.Target{Addr: addr.String()}.Dial(ctx, remote)
		}, nil
	}
	if _, err := netip.ParseAddrPort(spec); err != nil {
		return nil, fmt.Errorf("--forward %q: want HOST:PORT with an IP address, \"auto\" or \"off\"", spec)
	}
	return portfwd.Target{Addr: spec}.Dial, nil
}

// requireP2P refuses exits that do not carry BitTorrent: what a torrent
// client needs above all, and what other networks' exits drop silently.
func requireP2P(d discovery.Descriptor) error {
	if !d.P2P || !d.TCP || !d.UDP {
		return fmt.Errorf("does not carry BitTorrent (tcp %v, udp %v, p2p %v; policy: %s)", d.TCP, d.UDP, d.P2P, d.Policy)
	}
	return nil
}

// trustOnly wraps require so that it also refuses exits trust does not
// list (no list: any exit).
func trustOnly(trust []link.PeerID, require func(discovery.Descriptor) error) (func(discovery.Descriptor) error, func(link.PeerID) bool) {
	if len(trust) == 0 {
		return require, func(link.PeerID) bool { return true }
	}
	set := make(map[link.PeerID]bool, len(trust))
	for _, id := range trust {
		set[id] = true
	}
	trusted := func(id link.PeerID) bool { return set[id] }
	return func(d discovery.Descriptor) error {
		if !set[d.ID] {
			return errors.New("not in the trust file")
		}
		return require(d)
	}, trusted
}

// requireForward is requireP2P for a client that asked for forwarding in so
// many words: an exit that lends no port is no use to it.
func requireForward(d discovery.Descriptor) error {
	if err := requireP2P(d); err != nil {
		return err
	}
	if !d.Forward || d.FreePorts == 0 {
		return errors.New("lends no forwarded port, and --forward asks for one")
	}
	return nil
}
