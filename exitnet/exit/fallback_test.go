package exit

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// visit fetches https://addr/path as a browser would, over HTTP/2 or
// HTTP/1.1, accepting any certificate.
func visit(t *testing.T, addr, path string, h2 bool) (*http.Response, string) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "https://"+addr+path, nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET https://%s%s: %v", addr, path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// TestExitIsAWebSite: a browser (HTTP/2 and HTTP/1.1) gets the built-in
// page with an ordinary certificate; each visit is counted, and links keep
// working beside it.
func TestExitIsAWebSite(t *testing.T) {
	exit := serveExit(t, Config{Policy: &policy.Policy{AllowPrivate: true}})
	name := link.HostName(exit.addr.ID)
	for _, h2 := range []bool{true, false} {
		resp, body := visit(t, exit.addr.Addr, "/", h2)
		wantProto := map[bool]int{true: 2, false: 1}[h2]
		if resp.StatusCode != 200 || resp.ProtoMajor != wantProto || !strings.Contains(body, "<title>"+name+"</title>") {
			t.Fatalf("h2 %v: %s %d, body %q", h2, resp.Proto, resp.StatusCode, body)
		}
		cert := resp.TLS.PeerCertificates[0]
		if cert.Subject.CommonName != name || cert.NotAfter.Sub(cert.NotBefore) > 400*24*time.Hour {
			t.Fatalf("certificate for %q valid %v to %v", cert.Subject.CommonName, cert.NotBefore, cert.NotAfter)
		}
		if resp, _ := visit(t, exit.addr.Addr, "/missing", h2); resp.StatusCode != 404 {
			t.Fatalf("h2 %v: /missing answered %d", h2, resp.StatusCode)
		}
	}
	waitFor(t, "visits counted", func() bool { return exit.exit.Stats().Fallback == 4 })

	tg := startTarget(t, "tcp4", "127.0.0.1:0", nil)
	p := runPool(t, pool.Config{Link: link.Config{Identity: newIdentity(t)}, Exits: []link.ExitAddr{exit.addr}})
	roundTrip(t, p, "127.0.0.1:"+tg.port(), []byte("ping"), nil)
	if st := exit.exit.Stats(); st.Fallback != 4 || st.LinksAccepted != 1 {
		t.Fatalf("after a link: %d fallbacks, %d links", st.Fallback, st.LinksAccepted)
	}
}

// TestExitFallbackProxiesToASite: with Fallback set, visitors see that
// site, under the name they asked for.
func TestExitFallbackProxiesToASite(t *testing.T) {
	var host string
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host = r.Host
		io.WriteString(w, "the real site at "+r.URL.Path)
	}))
	t.Cleanup(site.Close)
	exit := serveExit(t, Config{Fallback: site.URL})
	for _, h2 := range []bool{true, false} {
		resp, body := visit(t, exit.addr.Addr, "/blog", h2)
		if resp.StatusCode != 200 || body != "the real site at /blog" || host != exit.addr.Addr {
			t.Fatalf("h2 %v: %d %q (host %q)", h2, resp.StatusCode, body, host)
		}
	}
	if _, err := New(Config{Link: link.Config{Identity: newIdentity(t)}, Fallback: "127.0.0.1:8080"}); err == nil {
		t.Fatal("New accepted a fallback that is not a URL")
	}
}

// TestExitGarbageIsCounted: a TLS client that sends garbage gets what a
// web server answers to it, and is counted.
func TestExitGarbageIsCounted(t *testing.T) {
	exit := serveExit(t, Config{})
	c, err := tls.Dial("tcp", exit.addr.Addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("\x00\x01garbage\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(reply), "HTTP/1.1 400 Bad Request") {
		t.Fatalf("garbage got %q, want a web server's 400", reply)
	}
	waitFor(t, "garbage counted", func() bool { return exit.exit.Stats().Fallback == 1 })
}

// TestExitH2SettingsAtOnce: an h2 visitor that sends nothing receives the
// exit's HTTP/2 SETTINGS at once, as from any HTTP/2 server, not after
// the exit has given up waiting for a client's proof.
func TestExitH2SettingsAtOnce(t *testing.T) {
	exit := serveExit(t, Config{Link: link.Config{Identity: newIdentity(t), HandshakeTimeout: time.Minute}})
	c, err := tls.Dial("tcp", exit.addr.Addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	hdr := make([]byte, 9)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[3] != 0x4 || hdr[4] != 0 {
		t.Fatalf("first frame header % x, %v; want SETTINGS", hdr, err)
	}
}

var _ net.Conn = (*doneConn)(nil)
