package announce

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzRewriteRequestLine: any line comes back whole unless it is an
// announce, whose only changes are its port and removed parameters; the
// result is stable (rewriting it again changes nothing).
func FuzzRewriteRequestLine(f *testing.F) {
	f.Add([]byte("GET /announce?"+ih+"&peer_id=x&port=1&ipv4=10.1.1.1 HTTP/1.1\r\n"), uint16(40001))
	f.Add([]byte("GET /a?info_hash=&peer_id=&port=&ip=%zz HTTP/1.1\n"), uint16(7))
	f.Add([]byte("GET /a?info_hash=a&peer_id=b&port=1#x HTTP/1.1"), uint16(0))
	f.Add([]byte("GET ? HTTP/"), uint16(1))
	f.Fuzz(func(t *testing.T, line []byte, port uint16) {
		out, r := RewriteRequestLine(nil, line, port, own)
		if !r.Rewritten && r.Stripped == 0 && !bytes.Equal(out, line) {
			t.Fatalf("unchanged result differs: %q -> %q", line, out)
		}
		if !r.Announce && (r.Rewritten || r.Stripped > 0 || r.Malformed) {
			t.Fatalf("result %+v for a line that is no announce", r)
		}
		if len(out) > len(line)+5 {
			t.Fatalf("grew by %d bytes", len(out)-len(line))
		}
		again, r2 := RewriteRequestLine(nil, out, port, own)
		if !bytes.Equal(again, out) || r2.Stripped > 0 || (r2.Rewritten && port != 0) {
			t.Fatalf("not stable: %q -> %q -> %q (%+v)", line, out, again, r2)
		}
	})
}

// FuzzHTTPWriter: the writer never panics, writes everything it was given
// once it passes, and cut anywhere into two writes gives the same bytes
// as one write.
func FuzzHTTPWriter(f *testing.F) {
	f.Add([]byte("GET /announce?"+ih+"&peer_id=x&port=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /a?"+ih+"&peer_id=y&port=2 HTTP/1.1\r\n\r\n"), 10)
	f.Add([]byte("\x13BitTorrent protocol"), 3)
	f.Add([]byte("GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /"), 20)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		opt := &Options{Port: func() uint16 { return 40001 }, Own: own, Count: &Counters{}}
		var one, two bytes.Buffer
		w1 := &HTTPWriter{W: &one, Opt: opt}
		if n, err := w1.Write(in); n != len(in) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if cut < 0 {
			cut = -cut
		}
		cut %= len(in) + 1
		w2 := &HTTPWriter{W: &two, Opt: opt}
		w2.Write(in[:cut])
		w2.Write(in[cut:])
		if !bytes.Equal(one.Bytes(), two.Bytes()) {
			t.Fatalf("one write %q, two writes %q", one.Bytes(), two.Bytes())
		}
		if w1.Passing() && !bytes.Contains(in, []byte("info_hash")) && !bytes.Equal(one.Bytes(), in) {
			t.Fatalf("changed a flow with no announce: %q -> %q", in, one.Bytes())
		}
	})
}

// FuzzUDPTrackers: any datagram either way, in any order, never panics, and
// the only bytes an outgoing datagram can lose are its port and IP fields.
func FuzzUDPTrackers(f *testing.F) {
	f.Add(connectReq(5), connectResp(5, 9), announceReq(9, [4]byte{10, 0, 0, 1}, 1))
	f.Add([]byte{}, []byte{0}, make([]byte, 98))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		u := &UDPTrackers{Opt: &Options{Port: func() uint16 { return 40001 }, Own: own, Count: &Counters{}}}
		dst := Dest{Host: "10.200.4.2", Port: 6969}
		src := netip.MustParseAddrPort("10.200.4.2:6969")
		for _, p := range [][]byte{a, b, c} {
			orig := bytes.Clone(p)
			out := u.Outgoing(p, dst, nil)
			u.Incoming(p, src)
			if !bytes.Equal(p, orig) {
				t.Fatal("modified the caller's datagram")
			}
			if len(out) != len(p) {
				t.Fatalf("length %d -> %d", len(p), len(out))
			}
			for i := range out {
				if out[i] != p[i] && !(i >= udpPortAt && i < udpPortAt+2) && !(i >= udpIPAt && i < udpIPAt+4) {
					t.Fatalf("byte %d changed", i)
				}
			}
		}
	})
}
