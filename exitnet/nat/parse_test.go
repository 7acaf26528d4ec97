package nat

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

var testGW = netip.MustParseAddr("192.168.77.1")

func TestCheckExternal(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
	}{
		{"11.7.0.1", true},
		{"8.8.8.8", true},
		{"::ffff:11.7.0.1", true},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"127.0.0.1", false},
		{"169.254.1.1", false},
		{"0.0.0.0", false},
		{"192.0.2.1", false},
		{"224.0.0.1", false},
		{"255.255.255.255", false},
		{"2001:db8::1", false},
		{"192.0.0.9", false},
		{"198.18.0.1", false},
		{"203.0.113.1", false},
		{"240.0.0.1", false},
		{"100.128.0.1", true},
		{"", false},
	} {
		var a netip.Addr
		if tc.addr != "" {
			a = netip.MustParseAddr(tc.addr)
		}
		err := checkExternal(a)
		if (err == nil) != tc.public {
			t.Errorf("checkExternal(%s) = %v, want public=%v", tc.addr, err, tc.public)
		}
		if err != nil && (!errors.Is(err, ErrDoubleNAT) || !strings.Contains(err.Error(), "ask the ISP")) {
			t.Errorf("checkExternal(%s) = %v: not ErrDoubleNAT with advice", tc.addr, err)
		}
	}
}

func FuzzCheckExternal(f *testing.F) {
	f.Add([]byte{100, 64, 0, 1})
	f.Add([]byte{11, 7, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		if checkExternal(a) == nil && (a.Unmap().IsPrivate() || a.Unmap().IsLoopback() || !a.Unmap().Is4() ||
			a.Unmap().IsLinkLocalUnicast() || a.Unmap().IsUnspecified()) {
			t.Fatalf("%v called public", a)
		}
	})
}

const routeTable = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	014DA8C0	0003	0	0	100	00000000	0	0	0
wlan0	00000000	0102A8C0	0003	0	0	600	00000000	0	0	0
eth0	004DA8C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
`

func TestParseRoutes(t *testing.T) {
	for _, tc := range []struct {
		name, table string
		want        string
	}{
		{"lowest metric", routeTable, "192.168.77.1"},
		{"no default", "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\neth0\t004DA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n", ""},
		{"not up", "h\neth0\t00000000\t014DA8C0\t0002\t0\t0\t0\t00000000\n", ""},
		{"loopback gateway", "h\nlo\t00000000\t0100007F\t0003\t0\t0\t0\t00000000\n", ""},
		{"garbage", "h\neth0\t00000000\tzzzzzzzz\t0003\t0\t0\t0\t00000000\n", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw, err := parseRoutes([]byte(tc.table))
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %v, want an error", gw)
				}
				return
			}
			if err != nil || gw != netip.MustParseAddr(tc.want) {
				t.Fatalf("got %v, %v; want %s", gw, err, tc.want)
			}
		})
	}
}

func FuzzParseRoutes(f *testing.F) {
	f.Add([]byte(routeTable))
	f.Add([]byte("h\n\t00000000\t\t3\t\t\t\t00000000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		gw, err := parseRoutes(b)
		if err == nil && !usableGateway(gw) {
			t.Fatalf("unusable gateway %v", gw)
		}
	})
}

const ssdpAnswer = "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n" +
	"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
	"USN: uuid:3f1a::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\n" +
	"SERVER: Debian UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://192.168.77.1:41143/rootDesc.xml\r\n\r\n"

func TestParseSSDP(t *testing.T) {
	withLoc := func(loc string) string {
		return strings.Replace(ssdpAnswer, "http://192.168.77.1:41143/rootDesc.xml", loc, 1)
	}
	for _, tc := range []struct {
		name, pkt string
		ok        bool
	}{
		{"miniupnpd", ssdpAnswer, true},
		{"default port", withLoc("http://192.168.77.1/desc.xml"), true},
		{"other LAN host", withLoc("http://192.168.77.66:41143/rootDesc.xml"), false},
		{"loopback", withLoc("http://127.0.0.1:41143/rootDesc.xml"), false},
		{"a name", withLoc("http://router.lan:41143/rootDesc.xml"), false},
		{"https", withLoc("https://192.168.77.1:41143/rootDesc.xml"), false},
		{"file", withLoc("file:///etc/passwd"), false},
		{"credentials", withLoc("http://u:p@192.168.77.1:41143/rootDesc.xml"), false},
		{"port 0", withLoc("http://192.168.77.1:0/rootDesc.xml"), false},
		{"port too big", withLoc("http://192.168.77.1:70000/rootDesc.xml"), false},
		{"zone", withLoc("http://[fe80::1%25eth0]:1/x"), false},
		{"v6", withLoc("http://[::ffff:192.168.77.2]:1/x"), false},
		{"none", strings.Replace(ssdpAnswer, "LOCATION", "X-LOC", 1), false},
		{"long", withLoc("http://192.168.77.1:1/" + strings.Repeat("a", 600)), false},
		{"not 200", strings.Replace(ssdpAnswer, "200 OK", "404 Not Found", 1), false},
		{"not http", "NOTIFY * HTTP/1.1\r\n\r\n", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := parseSSDP([]byte(tc.pkt), testGW)
			if (err == nil) != tc.ok {
				t.Fatalf("parseSSDP = %v, %v; want ok=%v", u, err, tc.ok)
			}
		})
	}
}

func FuzzParseSSDP(f *testing.F) {
	f.Add([]byte(ssdpAnswer))
	f.Add([]byte("HTTP/1.1 200 OK\r\nLOCATION: http://192.168.77.1:1/\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := parseSSDP(b, testGW)
		if err != nil {
			return
		}
		mustBeGatewayURL(t, u)
	})
}

func mustBeGatewayURL(t *testing.T, u *url.URL) {
	t.Helper()
	if u.Scheme != "http" || u.User != nil {
		t.Fatalf("accepted %q", u)
	}
	// What the HTTP client would dial.
	h, err := netip.ParseAddr(u.Hostname())
	if err != nil || h.Unmap() != testGW {
		t.Fatalf("accepted %q, which is not on the gateway", u)
	}
}

const rootDesc = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>1</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><SCPDURL>/WANIPCn.xml</SCPDURL>
<controlURL>CONTROL</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service></serviceList>
</device></deviceList></device></deviceList></device>URLBASE</root>`

func desc(control, urlBase string) []byte {
	if urlBase != "" {
		urlBase = "<URLBase>" + urlBase + "</URLBase>"
	}
	return []byte(strings.NewReplacer("CONTROL", control, "URLBASE", urlBase).Replace(rootDesc))
}

func TestUPnPFromDescription(t *testing.T) {
	loc, _ := url.Parse("http://192.168.77.1:41143/rootDesc.xml")
	local := netip.MustParseAddr("192.168.77.2")
	for _, tc := range []struct {
		name, control, base string
		ok                  bool
	}{
		{"relative", "/ctl/IPConn", "", true},
		{"absolute on gateway", "http://192.168.77.1:5000/ctl", "", true},
		{"base on gateway", "/ctl", "http://192.168.77.1:5000/", true},
		{"elsewhere", "http://192.168.77.66:5000/ctl", "", false},
		{"loopback", "http://127.0.0.1:5000/ctl", "", false},
		{"base elsewhere", "/ctl", "http://10.0.0.1:5000/", false},
		{"name", "http://evil.example:80/ctl", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := upnpFromDescription(desc(tc.control, tc.base), loc, testGW, local)
			if (err == nil) != tc.ok {
				t.Fatalf("upnpFromDescription: %v, want ok=%v", err, tc.ok)
			}
			if err == nil && (g.v2 == nil || !strings.HasPrefix(g.control, "http://192.168.77.1:")) {
				t.Fatalf("got %+v", g)
			}
		})
	}
	if _, err := upnpFromDescription([]byte(strings.Repeat(" ", maxHTTPBody+1)), loc, testGW, local); err == nil {
		t.Fatal("accepted an oversized description")
	}
}

func FuzzUPnPFromDescription(f *testing.F) {
	f.Add(desc("/ctl/IPConn", ""))
	f.Add(desc("http://192.168.77.66/x", "http://192.168.77.1:1/"))
	loc, _ := url.Parse("http://192.168.77.1:41143/rootDesc.xml")
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := upnpFromDescription(b, loc, testGW, netip.MustParseAddr("192.168.77.2"))
		if err != nil {
			return
		}
		u, err := url.Parse(g.control)
		if err != nil {
			t.Fatal(err)
		}
		mustBeGatewayURL(t, u)
	})
}

func TestCheckPMPMapping(t *testing.T) {
	for _, tc := range []struct {
		name               string
		internal, external uint16
		lifetime           uint32
		ok                 bool
	}{
		{"same port", 7000, 7000, 7200, true},
		{"other port", 7000, 40123, 60, true},
		{"other internal port", 7001, 7000, 7200, false},
		{"port 0", 7000, 0, 7200, false},
		{"no lifetime", 7000, 7000, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext, life, err := checkPMPMapping(7000, tc.internal, tc.external, tc.lifetime)
			if (err == nil) != tc.ok {
				t.Fatalf("checkPMPMapping = %d, %v, %v; want ok=%v", ext, life, err, tc.ok)
			}
			if err != nil && !isRefused(err) {
				t.Fatalf("a bad answer is not a refusal: %v", err)
			}
		})
	}
}

func FuzzCheckPMPMapping(f *testing.F) {
	f.Add(uint16(7000), uint16(7000), uint16(7000), uint32(7200))
	f.Fuzz(func(t *testing.T, asked, internal, external uint16, lifetime uint32) {
		ext, life, err := checkPMPMapping(asked, internal, external, lifetime)
		if err == nil && (internal != asked || ext == 0 || life <= 0) {
			t.Fatalf("accepted internal %d for %d, external %d, lifetime %v", internal, asked, ext, life)
		}
	})
}
