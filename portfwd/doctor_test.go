package portfwd

import (
	"encoding/json"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// safe452 is qBittorrent 4.5.2 set up for swarmvpn on 127.0.0.1:1080.
func safe452() map[string]any {
	p := fresh452()
	maps.Copy(p, map[string]any{"proxy_type": 2, "proxy_ip": "127.0.0.1", "proxy_port": 1080,
		"proxy_peer_connections": true, "lsd": false, "upnp": false})
	return p
}

// fresh50 is what a fresh qBittorrent 5.0 reports: the proxy type is a
// name and BitTorrent has its own switch.
func fresh50() map[string]any {
	return map[string]any{
		"listen_port": 23456, "random_port": false, "upnp": true, "announce_port": 0,
		"proxy_type": "None", "proxy_ip": "", "proxy_port": 8080, "proxy_auth_enabled": false,
		"proxy_bittorrent": true, "proxy_peer_connections": false, "proxy_hostname_lookup": false,
		"proxy_rss": true, "proxy_misc": true,
		"dht": true, "pex": true, "lsd": true,
	}
}

func with(base map[string]any, kv ...any) map[string]any {
	p := maps.Clone(base)
	for i := 0; i < len(kv); i += 2 {
		p[kv[i].(string)] = kv[i+1]
	}
	return p
}

func TestDiagnose(t *testing.T) {
	socks := netip.MustParseAddrPort("127.0.0.1:1080")
	for _, tc := range []struct {
		name  string
		prefs map[string]any
		want  map[string]map[string]any // setting -> fix
	}{
		{name: "fresh 4.5.2", prefs: fresh452(), want: map[string]map[string]any{
			"proxy_type":             {"proxy_type": 2},
			"proxy_ip":               {"proxy_ip": "127.0.0.1"},
			"proxy_port":             {"proxy_port": 1080},
			"proxy_peer_connections": {"proxy_peer_connections": true},
			"lsd":                    {"lsd": false},
			"upnp":                   {"upnp": false},
		}},
		{name: "fresh 5.0", prefs: fresh50(), want: map[string]map[string]any{
			"proxy_type":             {"proxy_type": "SOCKS5"},
			"proxy_ip":               {"proxy_ip": "127.0.0.1"},
			"proxy_port":             {"proxy_port": 1080},
			"proxy_peer_connections": {"proxy_peer_connections": true},
			"proxy_hostname_lookup":  {"proxy_hostname_lookup": true},
			"dht":                    {"proxy_hostname_lookup": true},
			"lsd":                    {"lsd": false},
			"upnp":                   {"upnp": false},
		}},
		{name: "safe 4.5.2", prefs: safe452()},
		{name: "safe 4.5.2 SOCKS5 with a password", prefs: with(safe452(), "proxy_type", 4)},
		{name: "safe 5.0", prefs: with(fresh50(), "proxy_type", "SOCKS5", "proxy_ip", "127.0.0.1", "proxy_port", 1080,
			"proxy_peer_connections", true, "proxy_hostname_lookup", true, "lsd", false, "upnp", false)},
		{name: "safe with DHT off and names not proxied", prefs: with(safe452(), "dht", false, "proxy_hostname_lookup", false),
			want: map[string]map[string]any{"proxy_hostname_lookup": {"proxy_hostname_lookup": true}}},
		{name: "HTTP proxy", prefs: with(safe452(), "proxy_type", 1),
			want: map[string]map[string]any{"proxy_type": {"proxy_type": 2}}},
		{name: "SOCKS5 as a string to 4.5.2 is fine", prefs: with(safe452(), "proxy_type", "socks5")},
		{name: "SOCKS4 by name", prefs: with(safe452(), "proxy_type", "SOCKS4"),
			want: map[string]map[string]any{"proxy_type": {"proxy_type": "SOCKS5"}}},
		{name: "other port", prefs: with(safe452(), "proxy_port", 1081),
			want: map[string]map[string]any{"proxy_port": {"proxy_port": 1080}}},
		{name: "localhost by name", prefs: with(safe452(), "proxy_ip", "localhost"),
			want: map[string]map[string]any{"proxy_ip": {"proxy_ip": "127.0.0.1"}}},
		{name: "BitTorrent not proxied", prefs: with(safe452(), "proxy_bittorrent", false),
			want: map[string]map[string]any{"proxy_bittorrent": {"proxy_bittorrent": true}}},
		{name: "no proxy settings at all", prefs: map[string]any{}, want: map[string]map[string]any{
			"proxy_type": {"proxy_type": 2}, "proxy_ip": {"proxy_ip": "127.0.0.1"}, "proxy_port": {"proxy_port": 1080},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Diagnose sees preferences as they come out of JSON.
			b, _ := json.Marshal(tc.prefs)
			var prefs map[string]any
			json.Unmarshal(b, &prefs)
			got := map[string]map[string]any{}
			for _, f := range Diagnose(prefs, socks) {
				if _, dup := got[f.Setting]; dup {
					t.Errorf("%s reported twice", f.Setting)
				}
				if f.Problem == "" {
					t.Errorf("%s: no problem described", f.Setting)
				}
				got[f.Setting] = f.Fix
			}
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("findings\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestDiagnoseFixes: applying every fix leaves nothing to find.
func TestDiagnoseFixes(t *testing.T) {
	socks := netip.MustParseAddrPort("127.0.0.1:1080")
	for name, prefs := range map[string]map[string]any{"4.5.2": fresh452(), "5.0": fresh50()} {
		findings := Diagnose(prefs, socks)
		for _, f := range findings {
			maps.Copy(prefs, f.Fix)
		}
		if left := Diagnose(prefs, socks); len(left) != 0 {
			t.Errorf("%s after the fixes: %v", name, left)
		}
		settings := make([]string, len(findings))
		for i, f := range findings {
			settings[i] = f.Setting
		}
		if !slices.Contains(settings, "proxy_peer_connections") {
			t.Errorf("%s: fresh defaults must report proxy_peer_connections: %v", name, settings)
		}
	}
}
