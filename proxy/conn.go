package proxy

import (
	"errors"
	"io"
	"net"
)

// clientConn is the client's side of a flow once its protocol header has been
// parsed. Reads come from r, which returns first the bytes the parser
// buffered past the header (a client may pipeline data right after its
// request) and then the rest of the connection; writes, half-close and close
// go to the connection itself.
type clientConn struct {
	net.Conn
	r io.Reader
}

func (c *clientConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the connection when it can, so that relay.Splice
// carries the target's end of stream to the client.
func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// SetLinger passes an abort on to the client as a TCP reset, so that a flow
// the exit or the target cut short does not look finished.
func (c *clientConn) SetLinger(sec int) error {
	if l, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
		return l.SetLinger(sec)
	}
	return errors.ErrUnsupported
}
