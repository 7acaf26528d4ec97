package link

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
)

// An exit serves a web site to whoever connects and does not prove itself
// a client: a browser, a scanner, a censor's prober, a replay. The exit's
// TLS listener is then an ordinary HTTPS server (HTTP/2 and HTTP/1.1) and
// Config.Fallback serves the connection as one.
//
// The first-bytes window: a client sends its proof in the same flight as
// its TLS Finished, so the exit knows a client at once. Anything else is
// known at the first byte that differs from the session's client tag (a
// 1 in 256 chance of a match per byte for anything not computed from the
// session), and handed over then, with the bytes already read put back:
// an HTTP request meets the web server as soon as it arrives, with no wait
// a prober could time. A connection that sends nothing is handed over when
// the handshake timeout runs out; a web server waits for a request then
// too, and on an h2 connection the exit has already sent its SETTINGS
// (Config.H2Preface), as an HTTP/2 server does at once.

// ErrFallback wraps the error Server returns when a connection did not
// prove itself a client (or was refused) and went to Config.Fallback.
var ErrFallback = errors.New("not an admitted client: served as a web site")

// ErrRefused is returned by Client when the exit did not accept this client:
// it is not on the exit's allow-list, the exit is full, or the server is no
// exit at all. The exit says nothing more.
var ErrRefused = errors.New("the exit did not accept this client (not on its allow-list, the exit is full, or the server is no exit)")

// replayConn is the connection the fallback serves: the bytes the exit
// read while looking for a client's proof come first, then the TLS
// connection; and the HTTP/2 server's first SETTINGS, which the exit has
// already sent, are not sent twice.
type replayConn struct {
	net.Conn
	state   tls.ConnectionState
	pending []byte // read, not yet given to the fallback
	skip    []byte // already written: swallowed from the fallback's first writes
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *replayConn) Write(p []byte) (int, error) {
	if len(c.skip) == 0 {
		return c.Conn.Write(p)
	}
	m := min(len(p), len(c.skip))
	if !bytes.Equal(p[:m], c.skip[:m]) {
		// The server's preface differs from what was sent; send its
		// bytes as they are.
		c.skip = nil
		return c.Conn.Write(p)
	}
	c.skip = c.skip[m:]
	if m == len(p) {
		return len(p), nil
	}
	n, err := c.Conn.Write(p[m:])
	return m + n, err
}

// ConnectionState lets net/http fill in Request.TLS.
func (c *replayConn) ConnectionState() tls.ConnectionState { return c.state }
