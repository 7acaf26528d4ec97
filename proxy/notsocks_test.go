package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSOCKSNotSOCKS5: bytes that are not SOCKS5 are closed at once, not
// held for the handshake timeout; an HTTP request gets a 400 that says
// this is the SOCKS5 port and where the HTTP proxy is.
func TestSOCKSNotSOCKS5(t *testing.T) {
	checkLeaks(t)
	withHTTP, _ := startSOCKS(t, SOCKSConfig{Dialer: &net.Dialer{}, HandshakeTimeout: time.Hour, HTTPAddr: "127.0.0.1:8118"})
	noHTTP, _ := startSOCKS(t, SOCKSConfig{Dialer: &net.Dialer{}, HandshakeTimeout: time.Hour})
	for _, tt := range []struct {
		name, proxy, send string
		status            int    // 0: closed with no answer
		body              string // what the 400's body says
	}{
		{"garbage", withHTTP, "hello there, anybody home?\n", 0, ""},
		{"SOCKS4", withHTTP, "\x04\x01\x00\x50\x7f\x00\x00\x01\x00", 0, ""},
		{"binary", withHTTP, "\xff\xff\xff\xff", 0, ""},
		{"HTTP GET", withHTTP, "GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\nUser-Agent: t\r\n\r\n", 400,
			"The HTTP proxy is at 127.0.0.1:8118"},
		{"HTTP CONNECT", withHTTP, "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n", 400, "SOCKS5 port"},
		{"HTTP without an HTTP proxy", noHTTP, "GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n", 400,
			"No HTTP proxy is running"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tt.proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// A guard far below the hour-long handshake timeout, not the
			// assertion: the server must close before either.
			c.SetReadDeadline(time.Now().Add(time.Minute))
			if _, err := io.WriteString(c, tt.send); err != nil {
				t.Fatal(err)
			}
			if tt.status == 0 {
				// Closed with the garbage unread, the connection may end
				// in a reset rather than an EOF: either is the close.
				got, err := io.ReadAll(c)
				if (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(got) != 0 {
					t.Fatalf("got %q, %v; want the connection closed with nothing said", got, err)
				}
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), "SOCKS5") || !strings.Contains(string(body), tt.body) {
				t.Fatalf("%s: %q, want %d saying %q", resp.Status, body, tt.status, tt.body)
			}
		})
	}
}

// TestSOCKSHTTPClientMistake: an HTTP client configured with the SOCKS5
// port as its HTTP proxy gets the 400 and its explanation.
func TestSOCKSHTTPClientMistake(t *testing.T) {
	checkLeaks(t)
	addr, _ := startSOCKS(t, SOCKSConfig{Dialer: &net.Dialer{}, HTTPAddr: "127.0.0.1:8118"})
	tr := &http.Transport{Proxy: http.ProxyURL(&neturl.URL{Scheme: "http", Host: addr})}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://example.org/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "curl --proxy http://127.0.0.1:8118") {
		t.Fatalf("%s: %q", resp.Status, body)
	}
}
