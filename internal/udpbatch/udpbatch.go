package udpbatch

import (
	"net"
	"net/netip"
)

// Message is one datagram of a batch.
type Message struct {
	// Buf is where ReadBatch puts a datagram, or the datagram WriteBatch
	// sends.
	Buf []byte
	// N is the length of the datagram ReadBatch received; at most len(Buf).
	N int
	// Trunc reports a datagram longer than Buf, whose tail was lost.
	Trunc bool
	// Addr is the source of a datagram ReadBatch received, or the
	// destination WriteBatch sends to. ReadBatch unmaps IPv4-mapped
	// addresses.
	Addr netip.AddrPort
}

// Conn reads and writes batches on a UDP socket. ReadBatch and WriteBatch
// may be called concurrently with each other, but each must not be called
// concurrently with itself.
type Conn struct {
	c *net.UDPConn
	sys
}

// New prepares batches of at most max datagrams on c, which stays the
// caller's to close.
func New(c *net.UDPConn, max int) (*Conn, error) {
	b := &Conn{c: c}
	if err := b.sys.init(c, max); err != nil {
		return nil, err
	}
	return b, nil
}

// ReadBatch waits for at least one datagram and receives as many as are
// queued, up to len(ms) and the max of New, into ms. It returns how many it
// received.
func (b *Conn) ReadBatch(ms []Message) (int, error) { return b.read(ms) }

// WriteBatch sends ms in order until one fails. It returns how many it
// sent; when that is less than len(ms), err says why ms[n] was not sent,
// and the caller may go on with ms[n+1:].
func (b *Conn) WriteBatch(ms []Message) (int, error) { return b.write(ms) }

// WriteBatchNow is WriteBatch that never waits for room in the socket's
// send buffer (on Linux): a datagram that finds none fails with
// syscall.EAGAIN, as if dropped on the way, and the caller may go on with
// the next. Elsewhere, and for a destination with a zone (which the net
// package sends), it is WriteBatch. While it runs, a send of the socket's
// by other means that waits for room holds it up: such a send keeps the
// socket's write lock while it waits.
func (b *Conn) WriteBatchNow(ms []Message) (int, error) { return b.writeNow(ms) }
