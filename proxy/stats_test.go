package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
)

// TestFlowStats carries known bytes through a SOCKS5 CONNECT, an HTTP
// CONNECT tunnel and a forwarded HTTP request, and compares each proxy's
// counters with them.
func TestFlowStats(t *testing.T) {
	checkLeaks(t)
	const n = 64 << 10
	up, down := randBytes(t, n), randBytes(t, 2*n)
	got := make(chan [32]byte, 2)
	target := startTarget(t, "127.0.0.1:0", exchange(down, got))

	socks, err := NewSOCKS(SOCKSConfig{Dialer: &net.Dialer{}})
	if err != nil {
		t.Fatal(err)
	}
	socksAddr, _ := serve(t, socks.Serve)
	c, code := socksConnect(t, socksAddr, target)
	if code != 0 {
		t.Fatalf("socks reply %d", code)
	}
	clientExchange(t, c, c, up)
	<-got
	eventually(t, "the SOCKS5 flow counted", func() bool { return socks.FlowStats().Flows == 1 })
	if st := socks.FlowStats(); st != (FlowStats{Flows: 1, BytesIn: 2 * n, BytesOut: n}) {
		t.Errorf("socks: %+v, want 1 flow, %d bytes in, %d out", st, 2*n, n)
	}

	h, err := NewHTTP(HTTPConfig{Dialer: &net.Dialer{}})
	if err != nil {
		t.Fatal(err)
	}
	httpAddr, _ := serve(t, h.Serve)
	hc, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Close() })
	io.WriteString(hc, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	const established = "HTTP/1.1 200 Connection established\r\n\r\n"
	head := make([]byte, len(established))
	if _, err := io.ReadFull(hc, head); err != nil || string(head) != established {
		t.Fatalf("CONNECT answer %q, %v", head, err)
	}
	clientExchange(t, hc, hc, up)
	<-got

	o := startOrigin(t, down)
	proxyURL, _ := url.Parse("http://" + httpAddr)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Post(o.URL+"/up", "application/octet-stream", bytes.NewReader(up))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(body, down) {
		t.Fatalf("forwarded response: %d bytes (%v), want %d", len(body), err, len(down))
	}
	want := FlowStats{Flows: 2, BytesIn: 4 * n, BytesOut: 2 * n}
	eventually(t, "both HTTP flows counted", func() bool { return h.FlowStats() == want })
	if st := h.FlowStats(); st != want {
		t.Errorf("http: %+v, want %+v", st, want)
	}
}
