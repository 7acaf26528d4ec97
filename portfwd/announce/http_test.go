package announce

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// own treats 192.168.1.20, 2001:db8::20 and 10.0.0.0/8 as the user's.
func own(a netip.Addr) bool {
	return a == netip.MustParseAddr("192.168.1.20") || a == netip.MustParseAddr("2001:db8::20") ||
		netip.MustParsePrefix("10.0.0.0/8").Contains(a)
}

const ih = "info_hash=%12%34V%78%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A"

func TestRewriteRequestLine(t *testing.T) {
	tests := []struct {
		name, in, want string
		port           uint16
		res            Result
	}{
		{"port rewritten",
			"GET /announce?" + ih + "&peer_id=-qB4520-abcdefghijkl&port=1&uploaded=0&downloaded=0&left=0 HTTP/1.1\r\n",
			"GET /announce?" + ih + "&peer_id=-qB4520-abcdefghijkl&port=40001&uploaded=0&downloaded=0&left=0 HTTP/1.1\r\n",
			40001, Result{Announce: true, Rewritten: true}},
		{"already right",
			"GET /announce?" + ih + "&peer_id=x&port=40001 HTTP/1.1\r\n",
			"GET /announce?" + ih + "&peer_id=x&port=40001 HTTP/1.1\r\n",
			40001, Result{Announce: true}},
		{"own addresses stripped, others kept",
			"GET /a?port=1&" + ih + "&ipv4=192.168.1.20&peer_id=x&ipv6=2001%3Adb8%3A%3A20&ip=203.0.113.9&compact=1 HTTP/1.0\n",
			"GET /a?port=7&" + ih + "&peer_id=x&ip=203.0.113.9&compact=1 HTTP/1.0\n",
			7, Result{Announce: true, Rewritten: true, Stripped: 2}},
		{"ip with port and brackets",
			"GET /a?" + ih + "&peer_id=x&port=6881&ipv6=%5B2001:db8::20%5D:6881&ipv4=10.1.2.3:6881 HTTP/1.1\r\n",
			"GET /a?" + ih + "&peer_id=x&port=9 HTTP/1.1\r\n",
			9, Result{Announce: true, Rewritten: true, Stripped: 2}},
		{"a name in ip= is kept",
			"GET /a?" + ih + "&peer_id=x&port=1&ip=example.org HTTP/1.1\r\n",
			"GET /a?" + ih + "&peer_id=x&port=2&ip=example.org HTTP/1.1\r\n",
			2, Result{Announce: true, Rewritten: true}},
		{"absolute form and fragment",
			"GET http://t.example:6969/announce?" + ih + "&peer_id=x&port=1#frag HTTP/1.1\r\n",
			"GET http://t.example:6969/announce?" + ih + "&peer_id=x&port=3#frag HTTP/1.1\r\n",
			3, Result{Announce: true, Rewritten: true}},
		{"empty parameters kept",
			"GET /a?&" + ih + "&&peer_id=x&port=1& HTTP/1.1\r\n",
			"GET /a?&" + ih + "&&peer_id=x&port=3& HTTP/1.1\r\n",
			3, Result{Announce: true, Rewritten: true}},
		{"no forwarded port: only strips",
			"GET /a?" + ih + "&peer_id=x&port=1&ip=10.9.9.9 HTTP/1.1\r\n",
			"GET /a?" + ih + "&peer_id=x&port=1 HTTP/1.1\r\n",
			0, Result{Announce: true, Stripped: 1}},
		{"scrape untouched",
			"GET /scrape?" + ih + " HTTP/1.1\r\n", "GET /scrape?" + ih + " HTTP/1.1\r\n", 5, Result{}},
		{"not GET",
			"POST /a?" + ih + "&peer_id=x&port=1 HTTP/1.1\r\n", "POST /a?" + ih + "&peer_id=x&port=1 HTTP/1.1\r\n", 5, Result{}},
		{"no version",
			"GET /a?" + ih + "&peer_id=x&port=1\r\n", "GET /a?" + ih + "&peer_id=x&port=1\r\n", 5, Result{}},
		{"no port: malformed",
			"GET /a?" + ih + "&peer_id=x HTTP/1.1\r\n", "GET /a?" + ih + "&peer_id=x HTTP/1.1\r\n", 5, Result{Announce: true, Malformed: true}},
		{"bad port: malformed",
			"GET /a?" + ih + "&peer_id=x&port=70000 HTTP/1.1\r\n", "GET /a?" + ih + "&peer_id=x&port=70000 HTTP/1.1\r\n", 5, Result{Announce: true, Malformed: true}},
		{"two ports: malformed",
			"GET /a?" + ih + "&peer_id=x&port=1&port=2 HTTP/1.1\r\n", "GET /a?" + ih + "&peer_id=x&port=1&port=2 HTTP/1.1\r\n", 5, Result{Announce: true, Malformed: true}},
		{"ordinary page", "GET /index.html?q=1 HTTP/1.1\r\n", "GET /index.html?q=1 HTTP/1.1\r\n", 5, Result{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res := RewriteRequestLine([]byte("prefix:"), []byte(tt.in), tt.port, own)
			if string(got) != "prefix:"+tt.want {
				t.Errorf("got  %q\nwant %q", got, "prefix:"+tt.want)
			}
			if res != tt.res {
				t.Errorf("result %+v, want %+v", res, tt.res)
			}
		})
	}
}

// sink records each Write it gets.
type sink struct {
	bytes.Buffer
	writes int
}

func (s *sink) Write(p []byte) (int, error) { s.writes++; return s.Buffer.Write(p) }

func TestHTTPWriterKeepAlive(t *testing.T) {
	var c Counters
	port := uint16(40001)
	opt := &Options{Port: func() uint16 { return port }, Own: own, Count: &c}
	req := func(p, extra string) string {
		return "GET /announce?" + ih + "&peer_id=x&port=" + p + extra + " HTTP/1.1\r\nHost: t:6969\r\nUser-Agent: qB/4.5.2\r\nContent-Length: 0\r\n\r\n"
	}
	in := req("1", "&ipv4=10.1.1.1") + "GET /favicon.ico HTTP/1.1\r\nHost: t\r\n\r\n" + req("1", "") + req("40001", "")
	want := req("40001", "") + "GET /favicon.ico HTTP/1.1\r\nHost: t\r\n\r\n" + req("40001", "") + req("40001", "")

	// whole, and cut at every byte boundary into two writes
	for cut := 0; cut <= len(in); cut++ {
		var s sink
		w := &HTTPWriter{W: &s, Opt: opt}
		for _, part := range []string{in[:cut], in[cut:]} {
			if n, err := w.Write([]byte(part)); err != nil || n != len(part) {
				t.Fatalf("cut %d: Write = %d, %v", cut, n, err)
			}
		}
		if s.String() != want {
			t.Fatalf("cut %d:\ngot  %q\nwant %q", cut, s.String(), want)
		}
		if w.Passing() {
			t.Fatalf("cut %d: stopped looking at a kept-alive flow", cut)
		}
	}
	st := c.Stats()
	if n := uint64(len(in) + 1); st.HTTP != 3*n || st.PortRewrites != 2*n || st.AddrStrips != n || st.Malformed != 0 {
		t.Errorf("stats %+v after %d runs", st, n)
	}
}

func TestHTTPWriterPassesOtherFlows(t *testing.T) {
	opt := &Options{Port: func() uint16 { return 9 }, Own: own}
	for _, tt := range []struct {
		name, in string
		pass     bool // stops looking after the input
	}{
		{"bittorrent handshake", "\x13BitTorrent protocol" + strings.Repeat("\x00", 48), true},
		{"tls", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", true},
		{"post with body then announce-like", "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /a?" + ih + "&peer_id=x&port=1 HTTP/1.1\r\n\r\n", true},
		{"get with chunked body", "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"websocket", "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x85abcdGET /a?", true},
		{"long line", "GET /" + strings.Repeat("a", MaxRequestLine+10) + "?" + ih + "&peer_id=x&port=1 HTTP/1.1\r\n\r\n", true},
		{"page", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s sink
			w := &HTTPWriter{W: &s, Opt: opt}
			if _, err := w.Write([]byte(tt.in)); err != nil {
				t.Fatal(err)
			}
			if s.String() != tt.in {
				t.Errorf("changed:\ngot  %.200q\nwant %.200q", s.String(), tt.in)
			}
			if w.Passing() != tt.pass {
				t.Errorf("passing %v, want %v", w.Passing(), tt.pass)
			}
		})
	}
}

// TestHTTPWriterNoHold: a flow that is not a GET is written at once, in
// the write that brought it, without a copy.
func TestHTTPWriterNoHold(t *testing.T) {
	var s sink
	w := &HTTPWriter{W: &s, Opt: &Options{Port: func() uint16 { return 9 }}}
	for i := range 3 {
		if _, err := w.Write([]byte{0x13, byte(i)}); err != nil {
			t.Fatal(err)
		}
		if s.writes != i+1 || s.Len() != 2*(i+1) {
			t.Fatalf("after write %d: %d writes, %d bytes", i, s.writes, s.Len())
		}
	}
}

func TestHTTPWriterOversizedCounted(t *testing.T) {
	var c Counters
	var s sink
	w := &HTTPWriter{W: &s, Opt: &Options{Port: func() uint16 { return 9 }, Count: &c}}
	in := "GET /a?" + ih + "&peer_id=x&port=1&pad=" + strings.Repeat("p", MaxRequestLine) + " HTTP/1.1\r\n\r\n"
	w.Write([]byte(in))
	if s.String() != in || c.Stats().Malformed != 1 {
		t.Errorf("output changed %v, malformed %d", s.String() != in, c.Stats().Malformed)
	}
}

func BenchmarkHTTPWriterPeerFlow(b *testing.B) {
	var s sink
	w := &HTTPWriter{W: &s, Opt: &Options{Port: func() uint16 { return 9 }}}
	p := bytes.Repeat([]byte{0x13}, 16<<10)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		w.Write(p)
		s.Reset()
	}
}

func BenchmarkHTTPWriterAnnounce(b *testing.B) {
	var s sink
	opt := &Options{Port: func() uint16 { return 40001 }, Own: own}
	p := []byte("GET /announce?" + ih + "&peer_id=-qB4520-abcdefghijkl&port=1&uploaded=0&downloaded=0&left=0&ipv4=10.1.1.1 HTTP/1.1\r\nHost: t:6969\r\n\r\n")
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	w := &HTTPWriter{W: &s, Opt: opt}
	for b.Loop() {
		w.Write(p)
		s.Reset()
	}
}
