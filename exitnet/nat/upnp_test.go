package nat

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
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
