package pool

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"sync"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// UDP is the client's end of a UDP association at the exit: one
// stream of datagram frames, one UDP socket at the exit.
type UDP struct {
	st *yamux.Stream
	// Port is the exit-side port of the association's socket: what peers
	// on the internet see as this client's UDP source port.
	Port uint16

	wmu  sync.Mutex
	wbuf []byte // WriteTo's frame, as long as the longest yet
	qbuf []byte // the frames Queue collected for Flush

	// r is ReadFrom's and Buffered's, made by their first call: an
	// association that Receives never needs it.
	r     *bufio.Reader
	stats *counters

	end    func() // counts the association closed
	closed sync.Once
}

// Associate opens a UDP association through the exit.
func (p *Pool) Associate(ctx context.Context) (*UDP, error) {
	st, resp, err := p.open(ctx, wire.Request{Kind: wire.KindUDP})
	if err != nil {
		return nil, err
	}
	return &UDP{st: st, Port: resp.Bound.Port, end: p.stats.flows.Begin(wire.KindUDP), stats: &p.stats}, nil
}

// reader returns the reader of ReadFrom and Buffered, which are never
// called concurrently.
func (a *UDP) reader() *bufio.Reader {
	if a.r == nil {
		a.r = bufio.NewReaderSize(a.st, wire.MaxFrameLen)
	}
	return a.r
}

// maxQueued bounds the frames Queue collects: what fits in one yamux
// frame (the link's MaxMessageSize is 64 KiB, its header included).
const maxQueued = 60 << 10

// Queue adds a datagram to the batch that Flush sends in one write, and
// reports true; or, when the batch has no room left for it, queues nothing
// and reports false: the caller flushes and queues it again. A datagram
// that cannot be framed is dropped and counted, and Queue reports true.
// Queue and Flush must not be called concurrently with themselves or each
// other; WriteTo may be.
func (a *UDP) Queue(payload []byte, dst wire.Addr) bool {
	if a.qbuf == nil {
		a.qbuf = make([]byte, 0, wire.MaxFrameLen)
	}
	start := len(a.qbuf)
	frame, err := wire.AppendDatagram(a.qbuf, dst, payload)
	if err != nil {
		a.stats.udpUnsendable.Add(1)
		a.qbuf = frame[:start]
		return true
	}
	if len(frame) > maxQueued && start > 0 {
		a.qbuf = frame[:start]
		return false
	}
	a.qbuf = frame
	return true
}

// Flush sends the datagrams Queue collected, several frames in one write.
// An error means the association is dead and they are lost.
func (a *UDP) Flush() error {
	if len(a.qbuf) == 0 {
		return nil
	}
	a.wmu.Lock()
	defer a.wmu.Unlock()
	_, err := a.st.Write(a.qbuf)
	a.qbuf = a.qbuf[:0]
	return err
}

// Buffered reports whether a whole frame has arrived that ReadFrom has not
// read yet: a ReadFrom now would not wait for the network.
func (a *UDP) Buffered() bool {
	r := a.reader()
	n := r.Buffered()
	if n < 2 {
		return false
	}
	h, _ := r.Peek(2)
	return n >= 2+int(binary.BigEndian.Uint16(h))
}

// WriteTo sends payload to dst, an IP or a name the exit resolves. It
// blocks while the link's window for this association is full; it never
// holds up other flows. A datagram that cannot be framed (too long for its
// address) is dropped and counted; an error means the association is dead.
func (a *UDP) WriteTo(payload []byte, dst wire.Addr) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	frame, err := wire.AppendDatagram(a.wbuf[:0], dst, payload)
	a.wbuf = frame[:0]
	if err != nil {
		a.stats.udpUnsendable.Add(1)
		return nil
	}
	_, err = a.st.Write(frame)
	return err
}

// ReadFrom reads the next datagram the exit relays, from any address, into
// p; a longer datagram is truncated. Frames that are not datagrams are
// skipped and counted. It must not be called concurrently with itself.
func (a *UDP) ReadFrom(p []byte) (int, wire.Addr, error) {
	r := a.reader()
	for {
		body, err := wire.PeekFrame(r)
		if err != nil {
			return 0, wire.Addr{}, err
		}
		src, payload, ok := a.parse(body)
		n := copy(p, payload)
		r.Discard(2 + len(body))
		if !ok {
			continue
		}
		return n, src, nil
	}
}

// Receiver takes an association's datagrams as they arrive (UDP.Receive).
type Receiver interface {
	// Ready reports whether a piece of the stream may be taken now: at
	// most datagrams datagrams in bytes bytes of frames (payloads and
	// sources, as on the wire). On false, the piece and all after it are
	// taken later, on Receive's caller's goroutine.
	Ready(bytes, datagrams int) bool
	// Datagram takes one datagram from src, an IP. payload is valid only
	// until Flush returns, and may be changed in place.
	Datagram(payload []byte, src wire.Addr)
	// Flush ends a piece: the datagrams since the last Flush may go on.
	Flush()
}

// Receive hands the datagrams the exit relays to r as they arrive, on the
// link's receive loop, which saves waking a goroutine for each piece: r's
// methods must then return soon and never wait (for the network, a lock
// held long, another association). When r is not Ready, Receive takes what
// the link kept on its caller's goroutine, where r's Datagram and Flush
// may wait (to pace an application's socket, say), and then hands over on
// the receive loop again. Receive returns when the association ends, with
// the error ReadFrom would have given, and only once no call of r's is
// under way, on either goroutine: none is made after. Frames that are not
// datagrams are skipped and counted. Neither ReadFrom nor Buffered may be
// called with it.
func (a *UDP) Receive(r Receiver) error {
	d := &delivery{a: a, r: r}
	d.each = d.datagram
	a.st.SetDeliver(d.piece)
	buf := make([]byte, wire.MaxFrameLen)
	for {
		// Read returns data only after r refused a piece.
		n, err := a.st.Read(buf)
		if n > 0 {
			d.frames.Split(buf[:n], d.each)
			r.Flush()
		}
		if err != nil {
			return d.end(err)
		}
		a.st.Resume()
	}
}

// delivery is one Receive's state: never used by two goroutines at once
// (the stream delivers only while Receive's caller reads nothing), but for
// a piece the receive loop is handing over as the stream closes, which
// Receive's end waits for (mu).
type delivery struct {
	a      *UDP
	r      Receiver
	frames wire.Frames
	each   func(body []byte)

	mu    sync.Mutex // held while the stream hands a piece over
	ended bool       // Receive has returned: r is not called again
}

// end ends Receive with err: once the stream has closed for reading, Read
// returns at once, while the receive loop may still be handing a piece to
// r. end waits for it, so that r is done with when Receive returns (its
// caller may pass r's buffers and sockets to the next association), and
// drops any piece after it.
func (d *delivery) end(err error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ended = true
	if err == io.EOF && len(d.frames.Pending()) > 0 {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// piece takes a piece of the stream if r is ready for it.
func (d *delivery) piece(p []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ended {
		return true // dropped: the association has ended
	}
	if !d.r.Ready(len(d.frames.Pending())+len(p), d.frames.Whole(p)) {
		return false
	}
	d.frames.Split(p, d.each)
	d.r.Flush()
	return true
}

func (d *delivery) datagram(body []byte) {
	if src, payload, ok := d.a.parse(body); ok {
		d.r.Datagram(payload, src)
	}
}

// parse splits a frame body from the exit into source and payload, and
// counts it when it is not a datagram from an IP.
func (a *UDP) parse(body []byte) (wire.Addr, []byte, bool) {
	src, payload, err := wire.ParseDatagram(body)
	if err != nil || !src.IP.IsValid() {
		a.stats.udpMalformed.Add(1)
		return wire.Addr{}, nil, false
	}
	return src, payload, true
}

// Close ends the association at both ends.
func (a *UDP) Close() error {
	a.closed.Do(a.end)
	return a.st.Close()
}
