package portfwd

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// Finding is one torrent client setting that lets traffic around the
// tunnel or defeats it.
type Finding struct {
	// Setting is the preference key, e.g. "proxy_peer_connections".
	Setting string
	// Problem says in one line what is wrong and why it leaks.
	Problem string
	// Fix holds the preferences that fix it, ready for SetPreferences.
	Fix map[string]any
}

// Diagnose inspects qBittorrent preferences, as Preferences returns them,
// against a swarmvpn SOCKS5 proxy at socks. It knows the keys of
// qBittorrent 4.5 (proxy_type a number, 2 for SOCKS5) and of newer versions
// (proxy_type a string, and the proxy_bittorrent switch); a check whose key
// the version lacks is skipped, except that a missing proxy type, address
// or port is reported. Findings come in a fixed order, no key twice.
func Diagnose(prefs map[string]any, socks netip.AddrPort) []Finding {
	var out []Finding
	add := func(setting, problem string, fix map[string]any) {
		out = append(out, Finding{Setting: setting, Problem: problem, Fix: fix})
	}

	if problem, fix := checkProxyType(prefs["proxy_type"]); problem != "" {
		add("proxy_type", problem, map[string]any{"proxy_type": fix})
	}
	ip, _ := prefs["proxy_ip"].(string)
	if a, err := netip.ParseAddr(ip); err != nil || a.Unmap() != socks.Addr().Unmap() {
		add("proxy_ip", fmt.Sprintf("the proxy address is %q, not swarmvpn's %s: torrent traffic goes to another proxy, or nowhere",
			ip, socks.Addr()), map[string]any{"proxy_ip": socks.Addr().String()})
	}
	if port, ok := number(prefs["proxy_port"]); !ok || port != float64(socks.Port()) {
		add("proxy_port", fmt.Sprintf("the proxy port is %v, not swarmvpn's %d: torrent traffic goes to another proxy, or nowhere",
			describe(prefs["proxy_port"]), socks.Port()), map[string]any{"proxy_port": int(socks.Port())})
	}
	if isOff(prefs, "proxy_bittorrent") {
		add("proxy_bittorrent", `"Use proxy for BitTorrent purposes" is off: peers and trackers are reached directly and see your own address`,
			map[string]any{"proxy_bittorrent": true})
	}
	if isOff(prefs, "proxy_peer_connections") {
		add("proxy_peer_connections", `"Use proxy for peer connections" is off (qBittorrent's default): peers are reached directly and see your own address`,
			map[string]any{"proxy_peer_connections": true})
	}
	if isOff(prefs, "proxy_hostname_lookup") {
		add("proxy_hostname_lookup", `"Use proxy for hostname lookups" is off: your own DNS server resolves tracker names and learns what you download`,
			map[string]any{"proxy_hostname_lookup": true})
		if isOn(prefs, "dht") {
			add("dht", "DHT is on while hostname lookups are not proxied: your own DNS server resolves its bootstrap nodes "+
				"(router.bittorrent.com and others) and learns that you use BitTorrent (or turn DHT off)",
				map[string]any{"proxy_hostname_lookup": true})
		}
	}
	if isOn(prefs, "lsd") {
		add("lsd", "Local Peer Discovery is on: it multicasts the torrents you share to your local network, outside the tunnel",
			map[string]any{"lsd": false})
	}
	if isOn(prefs, "upnp") {
		add("upnp", "UPnP / NAT-PMP is on: it asks your router to open a port to your own address, outside the tunnel "+
			"(swarmvpn forwards a port at the exit instead)", map[string]any{"upnp": false})
	}
	return out
}

// checkProxyType returns what is wrong with a proxy_type value, and the
// value that fixes it in the same form: qBittorrent 4.5 takes only the
// number (2 is SOCKS5, 4 SOCKS5 with a password) and ignores a string;
// newer versions use the name.
func checkProxyType(v any) (problem string, fix any) {
	if s, ok := v.(string); ok {
		if strings.EqualFold(s, "SOCKS5") {
			return "", nil
		}
		return fmt.Sprintf("the proxy type is %q, not SOCKS5: torrent traffic does not go through swarmvpn, "+
			"so peers and trackers see your own address", s), "SOCKS5"
	}
	n, ok := number(v)
	if ok && (n == 2 || n == 4) {
		return "", nil
	}
	names := map[float64]string{-1: "none", 0: "none", 1: "HTTP", 3: "HTTP", 5: "SOCKS4"}
	name, known := names[n]
	if !ok || !known {
		name = describe(v)
	}
	return fmt.Sprintf("the proxy type is %s, not SOCKS5: torrent traffic does not go through swarmvpn, "+
		"so peers and trackers see your own address", name), 2
}

// describe shows a preference's value in a message.
func describe(v any) string {
	if v == nil {
		return "unset"
	}
	return fmt.Sprint(v)
}

// isOn and isOff tell whether a boolean preference is present and true, or
// present and false.
func isOn(prefs map[string]any, key string) bool {
	b, ok := prefs[key].(bool)
	return ok && b
}

func isOff(prefs map[string]any, key string) bool {
	b, ok := prefs[key].(bool)
	return ok && !b
}

// qbAnnouncePortApp is the first qBittorrent release that tells libtorrent
// the port to announce (announce_port); older ones announce port 1 through
// a proxy.
var qbAnnouncePortApp = [3]int{5, 1, 0}

// HTTPSTrackerAdvice returns a warning when a qBittorrent of version (as
// Version returns it, "v4.5.2") older than 5.1 uses trackers over HTTPS:
// swarmvpn rewrites the port in plain HTTP and UDP announces, but cannot
// see inside TLS, so those trackers hand out port 1 and no peer connects.
// It returns "" when there is nothing to say.
func HTTPSTrackerAdvice(version string, trackers []string) string {
	v, ok := parseAPIVersion(version)
	if ok && !versionLess(v, qbAnnouncePortApp) {
		return ""
	}
	var https []string
	for _, t := range trackers {
		if u, err := url.Parse(t); err == nil && strings.EqualFold(u.Scheme, "https") {
			https = append(https, u.Host)
		}
	}
	if len(https) == 0 {
		return ""
	}
	slices.Sort(https)
	https = slices.Compact(https)
	shown := https
	if len(shown) > 5 {
		shown = append(shown[:5:5], fmt.Sprintf("and %d more", len(https)-5))
	}
	return fmt.Sprintf("qBittorrent %s announces port 1 through a proxy, and swarmvpn cannot correct it in HTTPS announces "+
		"(to %s): peers from those trackers cannot connect to you. Upgrade to qBittorrent 5.1 or later "+
		"(with --qbittorrent, swarmvpn then sets its announce port), or use the tracker's http:// or udp:// address if it has one",
		version, strings.Join(shown, ", "))
}
