package link

import (
	"net"
	"sync"
)

// crypto/tls writes each record with its own system call: one yamux frame
// of 64 KiB costs five writes into the kernel, and on loopback the system
// calls, not the cipher, bound a bulk flow. batchConn sits under the TLS
// connection and collects the records of one frame, which frameConn hands
// to the kernel in a single write when the frame is complete.
//
// Outside a frame (the handshake, alerts, a key update answered by the
// reading side) records pass straight through, so nothing is ever left
// waiting in the buffer.

// maxBatch bounds the bytes collected before a write to the kernel: a
// frame of MaxMessageSize plus the records' overhead fits.
const maxBatch = 80 << 10

type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.batching {
		return c.Conn.Write(p)
	}
	if len(c.buf)+len(p) > maxBatch {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxBatch {
			return c.Conn.Write(p)
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *batchConn) begin() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

// end closes the batch and writes what it collected.
func (c *batchConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	return c.flushLocked()
}

func (c *batchConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// frameConn is the TLS connection as yamux sees it: each Write, which
// yamux makes once per frame, goes to the kernel as one batch of records.
type frameConn struct {
	net.Conn
	batch *batchConn
}

func (c *frameConn) Write(p []byte) (int, error) {
	c.batch.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.batch.end(); err == nil && ferr != nil {
		n, err = 0, ferr
	}
	return n, err
}

// newBatched wraps conn for a TLS connection whose writes will be batched
// per frame; wrap the resulting tls.Conn with framed.
func newBatched(conn net.Conn) *batchConn {
	return &batchConn{Conn: conn}
}

func framed(tc net.Conn, b *batchConn) *frameConn { return &frameConn{Conn: tc, batch: b} }
