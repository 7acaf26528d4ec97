package announce

import (
	"bytes"
	"io"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

// MaxRequestLine is the longest request line HTTPWriter holds back to
// rewrite; a longer one passes through unchanged (and is counted when it
// looks like an announce), and the flow is not looked at again.
const MaxRequestLine = 8 << 10

// Options say how announces are rewritten. Its functions are called from
// the goroutines that write flows and datagrams, and must be safe for
// concurrent use.
type Options struct {
	// Port returns the port to announce: the forwarded port. 0 means none
	// now, and announces pass unchanged. Nil: nothing is rewritten.
	Port func() uint16
	// Own reports whether an address is one of the user's own: an ip=,
	// ipv4= or ipv6= parameter (or a UDP announce's IP field) naming one
	// is removed (zeroed). Nil: nothing is removed.
	Own func(netip.Addr) bool
	// Count receives what announces did. Nil: nothing is counted.
	Count *Counters
}

func (o *Options) port() uint16 {
	if o == nil || o.Port == nil {
		return 0
	}
	return o.Port()
}

func (o *Options) own(a netip.Addr) bool { return o != nil && o.Own != nil && o.Own(a) }

// Counters counts what rewriting did, across flows and associations. Safe
// for concurrent use.
type Counters struct {
	http, udp, rewrites, strips, malformed atomic.Uint64
}

// Stats is a snapshot of Counters.
type Stats struct {
	// HTTP and UDP count the announces seen while a port was forwarded,
	// rewritten or not (their port may already have been right).
	HTTP, UDP uint64
	// PortRewrites counts announces whose port was changed; AddrStrips,
	// the parameters (or UDP IP fields) that named one of the user's own
	// addresses and were removed.
	PortRewrites, AddrStrips uint64
	// Malformed counts announce-like requests passed through unchanged
	// because they could not be rewritten: no port, a bad one, several,
	// or a request line longer than MaxRequestLine.
	Malformed uint64
}

// Stats returns the counters' values; a nil Counters reads as zero.
func (c *Counters) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{HTTP: c.http.Load(), UDP: c.udp.Load(), PortRewrites: c.rewrites.Load(),
		AddrStrips: c.strips.Load(), Malformed: c.malformed.Load()}
}

func (o *Options) count(udp bool, r Result) {
	if o == nil || o.Count == nil {
		return
	}
	c := o.Count
	switch {
	case r.Malformed:
		c.malformed.Add(1)
		return
	case !r.Announce:
		return
	case udp:
		c.udp.Add(1)
	default:
		c.http.Add(1)
	}
	if r.Rewritten {
		c.rewrites.Add(1)
	}
	c.strips.Add(uint64(r.Stripped))
}

// Result says what a rewrite did to one request.
type Result struct {
	Announce  bool // it is an announce
	Rewritten bool // its port was changed
	Stripped  int  // address parameters removed
	// Malformed: it looks like an announce but could not be rewritten,
	// and passed unchanged.
	Malformed bool
}

// RewriteRequestLine appends to dst the HTTP request line line (with or
// without its line end, which is kept), rewritten when it is an announce:
// a GET whose query has info_hash and peer_id. Its port= becomes port, and
// the ip=, ipv4= and ipv6= parameters whose address own reports are
// removed; every other byte, the order of parameters and their encoding
// included, stays as it was. Anything else, and an announce with no port,
// a malformed one or more than one, is appended unchanged. Port 0 changes
// no port. own may be nil.
func RewriteRequestLine(dst, line []byte, port uint16, own func(netip.Addr) bool) ([]byte, Result) {
	body, eol := line, []byte(nil)
	if i := bytes.IndexByte(body, '\n'); i >= 0 {
		body, eol = body[:i], body[i:]
	}
	if n := len(body); n > 0 && body[n-1] == '\r' {
		body, eol = body[:n-1], line[n-1:]
	}
	q0, q1, ok := announceQuery(body)
	if !ok {
		return append(dst, line...), Result{}
	}
	query := body[q0:q1]
	var hasInfo, hasPeer bool
	ports := 0
	portOK := false
	for param := range bytes.SplitSeq(query, []byte("&")) {
		key, val, _ := bytes.Cut(param, []byte("="))
		switch string(key) {
		case "info_hash":
			hasInfo = true
		case "peer_id":
			hasPeer = true
		case "port":
			ports++
			_, err := strconv.ParseUint(string(val), 10, 16)
			portOK = err == nil
		}
	}
	if !hasInfo || !hasPeer {
		return append(dst, line...), Result{}
	}
	if ports != 1 || !portOK {
		return append(dst, line...), Result{Announce: true, Malformed: true}
	}
	r := Result{Announce: true}
	start := len(dst)
	dst = append(dst, body[:q0]...)
	first := true
	for param := range bytes.SplitSeq(query, []byte("&")) {
		key, val, _ := bytes.Cut(param, []byte("="))
		switch string(key) {
		case "port":
			if port != 0 && string(val) != strconv.Itoa(int(port)) {
				param = strconv.AppendUint([]byte("port="), uint64(port), 10)
				r.Rewritten = true
			}
		case "ip", "ipv4", "ipv6":
			if a, ok := paramAddr(val); ok && own != nil && own(a) {
				r.Stripped++
				continue
			}
		}
		if !first {
			dst = append(dst, '&')
		}
		first = false
		dst = append(dst, param...)
	}
	dst = append(dst, body[q1:]...)
	dst = append(dst, eol...)
	if !r.Rewritten && r.Stripped == 0 {
		// Byte for byte what came in, even where joining differed.
		dst = append(dst[:start], line...)
	}
	return dst, r
}

// announceQuery finds the query of a request line "GET TARGET HTTP/x":
// body[q0:q1], after the '?' and before a fragment.
func announceQuery(body []byte) (q0, q1 int, ok bool) {
	rest, ok := bytes.CutPrefix(body, []byte("GET "))
	if !ok {
		return 0, 0, false
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 || !bytes.HasPrefix(rest[sp+1:], []byte("HTTP/")) {
		return 0, 0, false
	}
	target := rest[:sp]
	qm := bytes.IndexByte(target, '?')
	if qm < 0 {
		return 0, 0, false
	}
	end := len(target)
	if h := bytes.IndexByte(target[qm:], '#'); h >= 0 {
		end = qm + h
	}
	base := len("GET ")
	return base + qm + 1, base + end, true
}

// paramAddr reads an address parameter's value: an IP, an IP:PORT or
// [IPv6]:PORT, percent-encoded or not.
func paramAddr(val []byte) (netip.Addr, bool) {
	s, err := url.QueryUnescape(string(val))
	if err != nil {
		return netip.Addr{}, false
	}
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// HTTPWriter rewrites the announces in one TCP flow's outgoing bytes, the
// requests an HTTP client writes, and writes the result to W. It holds
// back only an unfinished request line that starts with "GET " (at most
// MaxRequestLine bytes); a flow whose first bytes cannot start a GET, a
// request with a body or an upgrade, and an over-long line make it pass
// everything on unchanged from then on, so flows that are not HTTP
// (peer connections, TLS) cost one comparison. Not safe for concurrent
// Writes, as a connection's writer is not.
type HTTPWriter struct {
	W   io.Writer
	Opt *Options

	state int
	hold  []byte // the request line so far
	hdr   []byte // the start of the header line so far
	hlen  int    // the header line's length so far
	body  bool   // the request's headers announce a body or an upgrade
	out   []byte
}

const (
	stLine = iota // at or in a request line
	stHeaders
	stPass // not looked at any more
)

// maxHeaderPrefix is how much of each header line is kept to be judged.
const maxHeaderPrefix = 64

var getPrefix = []byte("GET ")

// Passing reports whether the writer has stopped looking at the flow.
func (h *HTTPWriter) Passing() bool { return h.state == stPass }

// Write writes p, rewritten where it is an announce, to W. It returns
// len(p) once all of it has been written or held back.
func (h *HTTPWriter) Write(p []byte) (int, error) {
	if h.state == stPass {
		return h.W.Write(p)
	}
	out := h.out[:0]
	rest := p
	for len(rest) > 0 && h.state != stPass {
		switch h.state {
		case stLine:
			i := bytes.IndexByte(rest, '\n')
			take := len(rest)
			if i >= 0 {
				take = i + 1
			}
			h.hold = append(h.hold, rest[:take]...)
			rest = rest[take:]
			if n := min(len(h.hold), len(getPrefix)); !bytes.Equal(h.hold[:n], getPrefix[:n]) {
				out = append(out, h.hold...)
				h.hold = h.hold[:0]
				h.state = stPass
				break
			}
			if len(h.hold) > MaxRequestLine {
				if bytes.Contains(h.hold, []byte("info_hash=")) {
					h.Opt.count(false, Result{Malformed: true})
				}
				out = append(out, h.hold...)
				h.hold = h.hold[:0]
				h.state = stPass
				break
			}
			if i < 0 {
				break
			}
			var r Result
			out, r = RewriteRequestLine(out, h.hold, h.Opt.port(), h.ownFunc())
			if r.Announce && (h.Opt.port() != 0 || r.Malformed) {
				h.Opt.count(false, r)
			}
			h.hold = h.hold[:0]
			h.state, h.hdr, h.hlen, h.body = stHeaders, h.hdr[:0], 0, false
		case stHeaders:
			i := bytes.IndexByte(rest, '\n')
			take := len(rest)
			if i >= 0 {
				take = i + 1
			}
			chunk := rest[:take]
			rest = rest[take:]
			out = append(out, chunk...)
			if room := maxHeaderPrefix - len(h.hdr); room > 0 {
				h.hdr = append(h.hdr, chunk[:min(room, len(chunk))]...)
			}
			h.hlen += len(chunk)
			if i < 0 {
				break
			}
			line := bytes.TrimRight(h.hdr, "\r\n")
			if h.hlen <= 2 && len(line) == 0 {
				// The end of the headers: a request without a body is
				// followed by the next request, or by nothing.
				h.state = stLine
				if h.body {
					h.state = stPass
				}
				break
			}
			if announcesBody(line) {
				h.body = true
			}
			h.hdr, h.hlen = h.hdr[:0], 0
		}
	}
	h.out = out[:0]
	if len(out) > 0 {
		if _, err := h.W.Write(out); err != nil {
			return 0, err
		}
	}
	if len(rest) > 0 {
		if _, err := h.W.Write(rest); err != nil {
			return len(p) - len(rest), err
		}
	}
	return len(p), nil
}

func (h *HTTPWriter) ownFunc() func(netip.Addr) bool {
	if h.Opt == nil {
		return nil
	}
	return h.Opt.Own
}

// announcesBody reports whether a header line (the first bytes of it) says
// that a body or another protocol follows the headers.
func announcesBody(line []byte) bool {
	name, val, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return false
	}
	switch strings.ToLower(string(bytes.TrimSpace(name))) {
	case "content-length":
		return string(bytes.TrimSpace(val)) != "0"
	case "transfer-encoding", "upgrade":
		return true
	}
	return false
}
