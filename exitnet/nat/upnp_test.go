package nat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// soapFault is a UPnP error as a router sends it.
func soapFault(code int) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
<s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>
<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>E</errorDescription></UPnPError>
</detail></s:Fault></s:Body></s:Envelope>`, code)
}

// TestUPnPAddAnyUnanswered: when AddPortMapping is refused (the port is
// taken) and AddAnyPortMapping gets no answer, the router may have placed
// the mapping: the error is not a refusal, so the mapping stays recorded.
// When AddAnyPortMapping is refused too, it is one.
func TestUPnPAddAnyUnanswered(t *testing.T) {
	for _, anyRefused := range []bool{false, true} {
		t.Run(fmt.Sprint("anyRefused=", anyRefused), func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if strings.Contains(r.Header.Get("SOAPACTION"), "#AddAnyPortMapping") && !anyRefused {
					select { // no answer
					case <-release:
					case <-r.Context().Done():
					}
					return
				}
				w.WriteHeader(http.StatusInternalServerError)
				io.WriteString(w, soapFault(upnpConflict))
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) })
			loc, _ := url.Parse(srv.URL + "/rootDesc.xml")
			gw := netip.MustParseAddr("127.0.0.1")
			g, err := upnpFromDescription(desc("/ctl", ""), loc, gw, netip.MustParseAddr("127.0.0.1"))
			if err != nil || g.v2 == nil {
				t.Fatalf("upnpFromDescription: %v, v2 %v", err, g != nil && g.v2 != nil)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			_, _, err = g.add(ctx, "udp", 40000, 40000, time.Hour)
			if err == nil || isRefused(err) != anyRefused {
				t.Fatalf("add: %v, refused %v; want refused %v", err, isRefused(err), anyRefused)
			}
		})
	}
}

// listEntry is one entry of a router's mapping list.
type listEntry struct {
	host, proto, client, desc string
	ext, internal             uint16
}

// listRouter is a UPnP-IGD v2 router on loopback whose mapping list is
// entry(i) (false: index i is past the end, a fault). It returns a gateway
// for it that speaks for 192.168.77.2 behind testGW, as discovery would.
func listRouter(t *testing.T, entry func(r *http.Request, i int) (listEntry, bool)) *upnpGateway {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var i int
		if _, err := fmt.Sscanf(between(string(body), "<NewPortMappingIndex>", "<"), "%d", &i); err != nil ||
			!strings.Contains(r.Header.Get("SOAPACTION"), "#GetGenericPortMappingEntry") {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, soapFault(401))
			return
		}
		e, ok := entry(r, i)
		if !ok {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, soapFault(713)) // SpecifiedArrayIndexInvalid
			return
		}
		fmt.Fprintf(w, `<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>
<u:GetGenericPortMappingEntryResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2">
<NewRemoteHost>%s</NewRemoteHost><NewExternalPort>%d</NewExternalPort><NewProtocol>%s</NewProtocol>
<NewInternalPort>%d</NewInternalPort><NewInternalClient>%s</NewInternalClient><NewEnabled>1</NewEnabled>
<NewPortMappingDescription>%s</NewPortMappingDescription><NewLeaseDuration>3600</NewLeaseDuration>
</u:GetGenericPortMappingEntryResponse></s:Body></s:Envelope>`, e.host, e.ext, e.proto, e.internal, e.client, e.desc)
	}))
	t.Cleanup(srv.Close)
	loc, _ := url.Parse(srv.URL + "/rootDesc.xml")
	g, err := upnpFromDescription(desc("/ctl", ""), loc, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.168.77.2"))
	if err != nil || g.v2 == nil {
		t.Fatalf("upnpFromDescription: %v", err)
	}
	g.gw = testGW // the router's address as a record names it; the test's router is on loopback
	return g
}

// between is the text of s after start, up to end.
func between(s, start, end string) string {
	_, s, _ = strings.Cut(s, start)
	s, _, _ = strings.Cut(s, end)
	return s
}

// TestUPnPList: of the router's mapping list, only this host's mappings
// under our description, from any remote host, are ours; each is listed
// once.
func TestUPnPList(t *testing.T) {
	const host = "192.168.77.2"
	table := []listEntry{
		{"", "TCP", host, description, 40123, 40000},                          // placed
		{"", "TCP", host, description, 40123, 40000},                          // listed twice
		{"", "TCP", host, "qBittorrent", 40124, 40000},                        // another program's
		{"", "TCP", "192.168.77.3", description, 40125, 40000},                // another host's
		{"203.0.113.9", "TCP", host, description, 40126, 40000},               // one remote host only
		{"", "GRE", host, description, 40127, 40000},                          // not a protocol we map
		{" ", "UDP", "::ffff:" + host, " " + description + " ", 40128, 40000}, // ours, spelt loosely
	}
	g := listRouter(t, func(_ *http.Request, i int) (listEntry, bool) {
		if i >= len(table) {
			return listEntry{}, false
		}
		return table[i], true
	})
	got, err := g.list(t.Context(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mine := func(proto string, ext uint16) recorded {
		return recorded{Method: MethodUPnP, Gateway: testGW, Client: netip.MustParseAddr(host), Proto: proto,
			Internal: 40000, External: ext}
	}
	if want := []recorded{mine("tcp", 40123), mine("udp", 40128)}; !slices.Equal(got, want) {
		t.Fatalf("list:\n%v\nwant\n%v", got, want)
	}
}

// TestUPnPListBounded: the list comes from the network. A router whose
// list does not end is read for maxListed entries, and one that stops
// answering midway until ctx ends gives what was read; both say so
// (errListCut). One that stops answering a request within each does not
// answer (no list).
func TestUPnPListBounded(t *testing.T) {
	ours := listEntry{"", "TCP", "192.168.77.2", description, 40123, 40000}
	t.Run("endless", func(t *testing.T) {
		var asked atomic.Int32
		g := listRouter(t, func(_ *http.Request, i int) (listEntry, bool) {
			asked.Add(1)
			return ours, true // the same entry, whatever the index
		})
		got, err := g.list(t.Context(), 10*time.Second)
		if !errors.Is(err, errListCut) || len(got) != 1 || asked.Load() != maxListed {
			t.Fatalf("list: %v, %v after %d requests; want the entry once, cut at %d", got, err, asked.Load(), maxListed)
		}
	})
	for _, cut := range []bool{true, false} {
		t.Run(fmt.Sprint("stalls, ctx ends=", cut), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			g := listRouter(t, func(r *http.Request, i int) (listEntry, bool) {
				if i == 3 {
					if cut {
						cancel() // the caller's time is up
					}
					<-r.Context().Done() // no answer
				}
				e := ours
				e.ext += uint16(i)
				return e, true
			})
			got, err := g.list(ctx, time.Second)
			if cut && (!errors.Is(err, errListCut) || len(got) != 3 || got[2].External != 40125) {
				t.Fatalf("list: %v, %v; want the 3 entries read, cut", got, err)
			}
			if !cut && (err == nil || errors.Is(err, errListCut) || isRefused(err) || got != nil) {
				t.Fatalf("list: %v, %v; want no answer", got, err)
			}
		})
	}
}
