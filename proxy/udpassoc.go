package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/things-go/go-socks5"
	"github.com/things-go/go-socks5/statute"

	"github.com/swarmvpn/swarmvpn/internal/udpbatch"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Associator opens UDP associations to the far side: one per SOCKS5 UDP ASSOCIATE.
type Associator interface {
	Associate(ctx context.Context) (Association, error)
}

// Association carries datagrams between this proxy and any number of remote addresses.
//
// An error from WriteTo or ReadFrom means the association can carry no more
// datagrams (its link dropped, say): the proxy then closes it and opens
// another. A datagram that merely cannot be delivered (a name that does not
// resolve, a destination the far side's policy refuses) should be dropped
// without an error.
type Association interface {
	// WriteTo sends one datagram to dst: an IP, or a name the far side resolves (never resolved here).
	WriteTo(p []byte, dst wire.Addr) error
	// ReadFrom reads the next datagram from any remote address into p; src is always an IP.
	ReadFrom(p []byte) (n int, src wire.Addr, err error)
	// Close ends the association; blocked ReadFrom/WriteTo calls return.
	Close() error
}

// Targeted is an Association that knows where datagrams from the far side
// go while the client has sent none, so that the proxy does not know its
// UDP port yet: the association whose exit-side socket is a forwarded
// port, whose local target (a torrent client's listen port, where it also
// receives uTP) may be a seeder that has nothing to send. They are sent to
// Target from the relay socket with the SOCKS5 UDP header, which is what
// the client's own association would have delivered. Once the client
// sends, its source address wins.
type Targeted interface {
	// Target returns the address, or an invalid AddrPort for none now.
	Target() netip.AddrPort
}

// Re-association back-off. After an Associate that failed, or an
// association that failed within maxReassocBackoff of being opened, the
// next attempt waits: minReassocBackoff at first, doubling up to
// maxReassocBackoff. An association that lived longer is re-opened at once.
const (
	minReassocBackoff = 250 * time.Millisecond
	maxReassocBackoff = 10 * time.Second
)

// udpBufLen holds any UDP datagram's payload.
const udpBufLen = 1 << 16

// relaySocketBuffer is the receive buffer asked for the relay socket: room
// for bursts of DHT and uTP traffic while the reader is busy.
const relaySocketBuffer = 4 << 20

// UDPStats counts the traffic of SOCKS5 UDP associations: of one, or of all
// a server has relayed. Bytes are datagram payloads, headers excluded.
type UDPStats struct {
	// Associations counts UDP ASSOCIATE requests answered with success;
	// Reassociations, associations to the far side re-opened after the
	// previous one failed.
	Associations, Reassociations uint64

	// DatagramsOut and BytesOut count what went from clients to the far
	// side; DatagramsIn and BytesIn what went from the far side to clients.
	DatagramsOut, BytesOut uint64
	DatagramsIn, BytesIn   uint64
	// ToTarget counts the datagrams from the far side that arrived before
	// the client sent its first and went to the association's Target.
	ToTarget uint64

	// Datagrams dropped, by reason.
	DropFrag         uint64 // from the client with FRAG ≠ 0: fragments are not reassembled
	DropMalformed    uint64 // from the client with a truncated header, an unknown address type or a bad name; from the far side with a source that is not an IP
	DropStranger     uint64 // to the relay socket from any address but the client's
	DropNoClientPort uint64 // from the far side before the client sent its first datagram, with no Target
	DropLinkDown     uint64 // either way while no association to the far side is open, or whose sending failed
	DropSendFailed   uint64 // from the far side, which the relay socket could not send to the client
	DropTooLong      uint64 // from the client, over 2 KiB and behind others in one read from the relay socket: its tail was cut
}

// udpCounter names one of the counters of UDPStats.
type udpCounter int

const (
	cAssociations udpCounter = iota
	cReassociations
	cDatagramsOut
	cBytesOut
	cDatagramsIn
	cBytesIn
	cToTarget
	cDropFrag
	cDropMalformed
	cDropStranger
	cDropNoClientPort
	cDropLinkDown
	cDropSendFailed
	cDropTooLong
	numUDPCounters
)

// udpCounters holds the values of a UDPStats, updated atomically.
type udpCounters [numUDPCounters]atomic.Uint64

func (c *udpCounters) stats() UDPStats {
	return UDPStats{
		Associations:     c[cAssociations].Load(),
		Reassociations:   c[cReassociations].Load(),
		DatagramsOut:     c[cDatagramsOut].Load(),
		BytesOut:         c[cBytesOut].Load(),
		DatagramsIn:      c[cDatagramsIn].Load(),
		BytesIn:          c[cBytesIn].Load(),
		ToTarget:         c[cToTarget].Load(),
		DropFrag:         c[cDropFrag].Load(),
		DropMalformed:    c[cDropMalformed].Load(),
		DropStranger:     c[cDropStranger].Load(),
		DropNoClientPort: c[cDropNoClientPort].Load(),
		DropLinkDown:     c[cDropLinkDown].Load(),
		DropSendFailed:   c[cDropSendFailed].Load(),
		DropTooLong:      c[cDropTooLong].Load(),
	}
}

// udpCount adds to an association's own counters and to its server's.
type udpCount struct{ own, total *udpCounters }

func (u udpCount) add(c udpCounter, n uint64) {
	u.own[c].Add(n)
	u.total[c].Add(n)
}

// UDPStats returns the totals of every UDP association the server has
// relayed, open ones included.
func (s *SOCKS) UDPStats() UDPStats { return s.udp.stats() }

// serveAssociate answers a UDP ASSOCIATE and relays the association's
// datagrams until the client closes the control connection c, or ctx ends
// (which closes c).
func (s *SOCKS) serveAssociate(c *socksConn, req *socks5.Request) error {
	local, lok := c.LocalAddr().(*net.TCPAddr)
	remote, rok := c.RemoteAddr().(*net.TCPAddr)
	if !lok || !rok {
		socks5.SendReply(c.Conn, statute.RepServerFailure, nil)
		return fmt.Errorf("socks5 udp associate: control connection is not TCP (%T)", c.Conn)
	}
	a, err := associate(c.ctx, s.associator)
	if err != nil {
		if rerr := socks5.SendReply(c.Conn, replyCode(err), nil); rerr != nil {
			return fmt.Errorf("socks5 udp associate: %w (reply: %v)", err, rerr)
		}
		return fmt.Errorf("socks5 udp associate: %w", err)
	}
	// The relay socket listens where the client reached us, so the client
	// can reach it too.
	bind := netip.AddrPortFrom(local.AddrPort().Addr().Unmap(), 0)
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(bind))
	if err != nil {
		a.Close()
		socks5.SendReply(c.Conn, statute.RepServerFailure, nil)
		return fmt.Errorf("socks5 udp associate: relay socket: %w", err)
	}
	pc.SetReadBuffer(relaySocketBuffer) // a smaller buffer only drops more in bursts
	if err := socks5.SendReply(c.Conn, statute.RepSuccess, pc.LocalAddr()); err != nil {
		pc.Close()
		a.Close()
		return fmt.Errorf("socks5 udp associate: reply: %w", err)
	}

	client := remote.AddrPort().Addr().Unmap()
	ctx, cancel := context.WithCancel(c.ctx)
	r := &udpRelay{
		pc:         pc,
		clientAddr: client,
		clientIP:   client.WithZone(""),
		ctrl:       c.Conn,
	}
	r.count = udpCount{own: &r.own, total: &s.udp}
	r.up = newUplink(ctx, s.associator, s.log, r.count)
	if req.DestAddr != nil && req.DestAddr.Port != 0 {
		// The client said which port it sends from.
		r.clientPort.Store(uint32(req.DestAddr.Port))
	}
	r.count.add(cAssociations, 1)
	r.up.open(a)

	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(r.fromClient)
	wg.Go(r.fromFar)
	// The association lives exactly as long as the control connection:
	// until the client closes it, or ctx ends and serveConns closes it.
	// Whatever the client sends on it is ignored.
	_, err = io.Copy(io.Discard, req.Reader)
	cancel()
	r.up.close()
	pc.Close()
	wg.Wait()

	st := r.own.stats()
	attrs := []any{
		"bytes_in", st.BytesIn, "bytes_out", st.BytesOut, "dur", time.Since(start),
		"datagrams_in", st.DatagramsIn, "datagrams_out", st.DatagramsOut, "to_target", st.ToTarget,
		"reassociations", st.Reassociations,
		"drop_frag", st.DropFrag, "drop_malformed", st.DropMalformed,
		"drop_stranger", st.DropStranger, "drop_no_client_port", st.DropNoClientPort,
		"drop_link_down", st.DropLinkDown, "drop_send_failed", st.DropSendFailed,
	}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	s.log.Debug("socks5 udp association ended", attrs...)
	return nil
}

// associate calls as.Associate, which must return an association or an
// error.
func associate(ctx context.Context, as Associator) (Association, error) {
	a, err := as.Associate(ctx)
	if err == nil && a == nil {
		err = errors.New("associator returned neither an association nor an error")
	}
	return a, err
}

// udpRelay carries one association's datagrams between the client, on the
// relay socket, and the far side, through the uplink.
type udpRelay struct {
	pc   *net.UDPConn
	up   *uplink
	ctrl net.Conn // the control connection, closed only if pc fails

	// clientAddr is where datagrams for the client go; clientIP, the same
	// without a zone, is what a datagram's source is compared with.
	clientAddr, clientIP netip.Addr
	// clientPort is the client's UDP port, 0 until known. Only fromClient
	// stores it.
	clientPort atomic.Uint32

	own   udpCounters
	count udpCount
}

// fromClient reads the client's datagrams from the relay socket and sends
// them to the far side, until the relay socket is closed. What one read
// from the socket brings goes to the far side in one write, when the
// association can batch.
func (r *udpRelay) fromClient() {
	bc, err := udpbatch.New(r.pc, relayBatch)
	if err != nil {
		r.ctrl.Close()
		return
	}
	ms := make([]udpbatch.Message, relayBatch)
	ms[0].Buf = make([]byte, udpBufLen)
	slots := make([]byte, (relayBatch-1)*relaySlot)
	for i := 1; i < relayBatch; i++ {
		ms[i].Buf = slots[(i-1)*relaySlot : i*relaySlot : i*relaySlot]
	}
	var b outBatch
	for {
		n, err := bc.ReadBatch(ms)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				// Not seen on a working host. Without its socket the
				// association is dead: end it as the client's closing
				// the control connection would.
				r.ctrl.Close()
			}
			return
		}
		b.l = r.up.get()
		for _, m := range ms[:n] {
			if m.Trunc {
				r.count.add(cDropTooLong, 1)
				continue
			}
			if m.Addr.Addr().WithZone("") != r.clientIP {
				r.count.add(cDropStranger, 1)
				continue
			}
			switch port := r.clientPort.Load(); {
			case port == 0:
				r.clientPort.Store(uint32(m.Addr.Port()))
			case port != uint32(m.Addr.Port()):
				r.count.add(cDropStranger, 1)
				continue
			}
			dst, data, err := parseUDPHeader(m.Buf[:m.N])
			if err != nil {
				if err == errUDPFrag {
					r.count.add(cDropFrag, 1)
				} else {
					r.count.add(cDropMalformed, 1)
				}
				continue
			}
			r.send(&b, data, dst)
		}
		r.flush(&b)
	}
}

// relayBatch is the most datagrams moved per system call on the relay
// socket; relaySlot, the room for each but the first of a batch read from
// it (which has room for any).
const (
	relayBatch = 32
	relaySlot  = 2048
)

// queuer is an Association that collects datagrams and sends them in one
// write: Queue reports false, queuing nothing, when the batch is full.
type queuer interface {
	Queue(p []byte, dst wire.Addr) bool
	Flush() error
}

// outBatch is what fromClient has queued on the association l.
type outBatch struct {
	l            liveAssoc
	dgrams, size uint64
}

// send sends a datagram to dst on b's association, or queues it when the
// association batches.
func (r *udpRelay) send(b *outBatch, data []byte, dst wire.Addr) {
	if b.l.a == nil {
		r.count.add(cDropLinkDown, 1)
		return
	}
	q, ok := b.l.a.(queuer)
	if !ok {
		if err := b.l.a.WriteTo(data, dst); err != nil {
			r.up.fail(b.l.gen, err)
			b.l.a = nil
			r.count.add(cDropLinkDown, 1)
			return
		}
		r.count.add(cDatagramsOut, 1)
		r.count.add(cBytesOut, uint64(len(data)))
		return
	}
	if !q.Queue(data, dst) {
		if r.flush(b); b.l.a == nil {
			r.count.add(cDropLinkDown, 1)
			return
		}
		q.Queue(data, dst) // an empty batch has room for any datagram
	}
	b.dgrams++
	b.size += uint64(len(data))
}

// flush sends what b has queued and counts it, as sent or as lost.
func (r *udpRelay) flush(b *outBatch) {
	if b.dgrams == 0 {
		return
	}
	dgrams, size := b.dgrams, b.size
	b.dgrams, b.size = 0, 0
	if err := b.l.a.(queuer).Flush(); err != nil {
		r.up.fail(b.l.gen, err)
		b.l.a = nil
		r.count.add(cDropLinkDown, dgrams)
		return
	}
	r.count.add(cDatagramsOut, dgrams)
	r.count.add(cBytesOut, size)
}

// buffered is an Association that tells whether its next ReadFrom would
// return at once.
type buffered interface{ Buffered() bool }

// Receiver takes the far side's datagrams as they arrive: see receiving.
type Receiver interface {
	// Ready reports whether a piece of at most datagrams datagrams in
	// bytes bytes (payloads and sources) may be taken now, without
	// waiting; on false it comes later, where Datagram and Flush may wait.
	Ready(bytes, datagrams int) bool
	// Datagram takes a datagram from src; payload is valid until Flush
	// returns.
	Datagram(payload []byte, src wire.Addr)
	// Flush ends a piece.
	Flush()
}

// receiving is an Association that hands datagrams over as they arrive,
// on a goroutine of its own (the link's receive loop, which saves a
// wake-up per piece), rather than through ReadFrom. Receive returns when
// the association ends, with the error ReadFrom would have given, once r
// is no longer used: fromFar hands r's buffers, socket and pacer to the
// next association.
type receiving interface {
	Receive(r Receiver) error
}

// fromFar reads datagrams from each association the uplink opens in turn
// and sends them to the client, until the relay ends. The datagrams that
// arrived together go to the client in one system call, when the
// association tells which did.
func (r *udpRelay) fromFar() {
	bc, err := udpbatch.New(r.pc, relayBatch)
	if err != nil {
		return
	}
	var pc pacer
	defer pc.close()
	// Datagrams are read one after the other into buf, each behind room
	// for its header, until what is left may not hold the largest.
	const room = maxIPUDPHeaderLen + udpBufLen
	buf := make([]byte, 2*room)
	ms := make([]udpbatch.Message, 0, relayBatch)
	for {
		var l liveAssoc
		select {
		case <-r.up.ctx.Done():
			return
		case l = <-r.up.ready:
		}
		if ra, ok := l.a.(receiving); ok {
			in := &farIn{r: r, a: l.a, bc: bc, pc: &pc, buf: buf, ms: ms[:0]}
			r.up.fail(l.gen, ra.Receive(in))
			continue
		}
		more, _ := l.a.(buffered)
		for {
			ms = ms[:0]
			off := 0
			var err error
			for len(ms) == 0 || (more != nil && more.Buffered() && len(ms) < relayBatch && len(buf)-off >= room) {
				var n int
				var src wire.Addr
				n, src, err = l.a.ReadFrom(buf[off+maxIPUDPHeaderLen : off+room])
				if err != nil {
					break
				}
				n = min(n, udpBufLen)
				dst, toTarget := r.clientDst(l.a)
				if !dst.IsValid() {
					r.count.add(cDropNoClientPort, 1)
					continue
				}
				h := udpHeaderLen(src)
				if h == 0 || !src.IP.IsValid() {
					r.count.add(cDropMalformed, 1)
					continue
				}
				if toTarget {
					r.count.add(cToTarget, 1)
				}
				start := off + maxIPUDPHeaderLen - h
				appendUDPHeader(buf[start:start], src)
				end := off + maxIPUDPHeaderLen + n
				ms = append(ms, udpbatch.Message{Buf: buf[start:end], N: n, Addr: dst})
				off = end
			}
			if len(ms) > 0 {
				pc.wait(r.up.ctx, r.pc, ms)
			}
			r.toClient(bc, ms, true)
			if err != nil {
				r.up.fail(l.gen, err)
				break
			}
		}
	}
}

// clientDst is where a datagram from the far side goes: to the client's
// port once known, before that to a's Target if it has one. An invalid
// address means nowhere.
func (r *udpRelay) clientDst(a Association) (dst netip.AddrPort, toTarget bool) {
	if port := r.clientPort.Load(); port != 0 {
		return netip.AddrPortFrom(r.clientAddr, uint16(port)), false
	}
	if t, ok := a.(Targeted); ok {
		if dst := t.Target(); dst.IsValid() && dst.Port() != 0 {
			return dst, true
		}
	}
	return netip.AddrPort{}, false
}

// farIn takes the datagrams of one association as it hands them over
// (receiving), and sends them to the client a piece at a time. Pieces
// taken on the link's receive loop are taken only when the client's
// socket has room for them (Ready), so nothing there waits for the pacer;
// the rest are paced on fromFar's goroutine. Nor does a send there wait
// for room in the relay socket's send buffer (a client on another host,
// behind a slower network): what finds none is dropped, and the pieces
// after it are taken on fromFar's goroutine, whose sends wait, until one
// finds room at once.
type farIn struct {
	r   *udpRelay
	a   Association
	bc  *udpbatch.Conn
	pc  *pacer
	buf []byte // datagrams with their headers, each behind room for the longest
	off int
	ms  []udpbatch.Message
	// now is set from a Ready until the Flush of its piece: the piece was
	// taken on the receive loop, with room for it, and must not wait.
	now bool
	// dst and toTarget are where the piece taken by Ready goes, while now
	// is set: where its room was counted, though the client may send its
	// first datagram meanwhile.
	dst      netip.AddrPort
	toTarget bool
	// full is set when the send buffer had no room for a send that could
	// not wait, until one that could finds room at once.
	full bool
}

func (f *farIn) Ready(bytes, datagrams int) bool {
	if f.full {
		f.now = false
		return false
	}
	f.dst, f.toTarget = f.r.clientDst(f.a)
	if !f.dst.IsValid() {
		f.now = true // dropped, not sent
		return true
	}
	// A SOCKS5 header is one byte longer than a frame's.
	f.now = f.pc.take(f.r.up.ctx, f.r.pc, f.dst, bytes+datagrams*(1+paceOverhead))
	return f.now
}

func (f *farIn) Datagram(payload []byte, src wire.Addr) {
	const room = maxIPUDPHeaderLen + udpBufLen
	if len(f.buf)-f.off < room {
		f.send()
	}
	dst, toTarget := f.dst, f.toTarget
	if !f.now {
		dst, toTarget = f.r.clientDst(f.a)
	}
	if !dst.IsValid() {
		f.r.count.add(cDropNoClientPort, 1)
		return
	}
	h := udpHeaderLen(src)
	if h == 0 {
		f.r.count.add(cDropMalformed, 1)
		return
	}
	if toTarget {
		f.r.count.add(cToTarget, 1)
	}
	n := copy(f.buf[f.off+maxIPUDPHeaderLen:f.off+room], payload)
	start := f.off + maxIPUDPHeaderLen - h
	appendUDPHeader(f.buf[start:start], src)
	end := f.off + maxIPUDPHeaderLen + n
	f.ms = append(f.ms, udpbatch.Message{Buf: f.buf[start:end], N: n, Addr: dst})
	f.off = end
	if len(f.ms) == relayBatch {
		f.send()
	}
}

func (f *farIn) Flush() {
	f.send()
	f.now = false
}

// send sends what is batched: at once for a piece taken with room for it,
// dropping what finds the send buffer full; else once the pacer has room,
// waiting for room in the send buffer.
func (f *farIn) send() {
	if len(f.ms) > 0 {
		if f.now {
			if rest := f.r.toClient(f.bc, f.ms, false); len(rest) > 0 {
				f.r.count.add(cDropSendFailed, uint64(len(rest)))
				f.full = true
			}
		} else {
			f.pc.wait(f.r.up.ctx, f.r.pc, f.ms)
			rest := f.r.toClient(f.bc, f.ms, false)
			f.full = len(rest) > 0
			f.r.toClient(f.bc, rest, true)
		}
	}
	f.ms, f.off = f.ms[:0], 0
}

// toClient sends ms to the client and counts them; each one's N is the
// length of its payload. It returns the datagrams left unsent: with wait,
// none (it waits for room in the socket's send buffer; one the kernel
// refuses is dropped and counted); without, those from the first that
// found no room on, not counted.
func (r *udpRelay) toClient(bc *udpbatch.Conn, ms []udpbatch.Message, wait bool) []udpbatch.Message {
	for len(ms) > 0 {
		write := bc.WriteBatchNow
		if wait {
			write = bc.WriteBatch
		}
		n, err := write(ms)
		for _, m := range ms[:n] {
			r.count.add(cDatagramsIn, 1)
			r.count.add(cBytesIn, uint64(m.N))
		}
		if n == len(ms) {
			return nil
		}
		if !wait && errors.Is(err, syscall.EAGAIN) {
			return ms[n:]
		}
		r.count.add(cDropSendFailed, 1)
		ms = ms[n+1:]
	}
	return nil
}

// liveAssoc is an open association and its generation: the number that
// tells it from the ones before it.
type liveAssoc struct {
	a   Association
	gen uint64
}

// uplink is a relay's association to the far side. When the association
// fails, uplink closes it and opens another at once, in the background,
// retrying with back-off until it succeeds or the relay ends: datagrams
// from the internet can only reach the client while an association is
// open, so the uplink does not wait for the client to send first.
type uplink struct {
	ctx   context.Context // ends with the relay; Associate calls use it
	assoc Associator
	log   *slog.Logger
	count udpCount
	// ready receives each association as it opens, for fromFar; it holds
	// at most the newest.
	ready chan liveAssoc
	wg    sync.WaitGroup // the re-opening goroutine

	mu        sync.Mutex
	cur       liveAssoc // cur.a is nil while the link is down
	gen       uint64
	closed    bool
	dialing   bool      // a goroutine is re-opening the association
	since     time.Time // when cur was opened, or the link went down
	backoff   time.Duration
	notBefore time.Time // no attempt before
}

func newUplink(ctx context.Context, a Associator, log *slog.Logger, count udpCount) *uplink {
	return &uplink{ctx: ctx, assoc: a, log: log, count: count, ready: make(chan liveAssoc, 1)}
}

// open makes a the current association. The caller holds mu, or is the
// only one to use u.
func (u *uplink) open(a Association) {
	u.gen++
	u.cur = liveAssoc{a: a, gen: u.gen}
	u.since = time.Now()
	select {
	case <-u.ready: // one that failed before fromFar took it
	default:
	}
	u.ready <- u.cur
}

// get returns the current association, or one with a nil a while the link
// is down.
func (u *uplink) get() liveAssoc {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cur
}

// reassociate re-opens the association: one attempt at a time, each after
// the back-off, until one succeeds or the relay ends.
func (u *uplink) reassociate() {
	for {
		u.mu.Lock()
		wait := time.Until(u.notBefore)
		u.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-u.ctx.Done():
				t.Stop()
			}
		}
		var a Association
		err := u.ctx.Err()
		began := time.Now()
		if err == nil {
			a, err = associate(u.ctx, u.assoc)
		}
		u.mu.Lock()
		if u.closed || u.ctx.Err() != nil {
			u.dialing = false
			u.mu.Unlock()
			if err == nil {
				a.Close()
			}
			return
		}
		if err != nil {
			// An attempt that waited for a link to come up and found none
			// has spent its back-off waiting already; the next one may
			// start at once and will see the link the moment it is back.
			if wire.StatusOf(err) != wire.StatusNetworkUnreachable || time.Since(began) < minReassocBackoff {
				u.delay(time.Now())
			}
			u.mu.Unlock()
			u.log.Debug("socks5 udp re-association failed", "err", err)
			continue
		}
		u.dialing = false
		down := time.Since(u.since)
		u.open(a)
		u.mu.Unlock()
		u.count.add(cReassociations, 1)
		u.log.Info("socks5 udp association re-established", "dur", down)
		return
	}
}

// delay sets the back-off after a failure at now. The caller holds mu.
func (u *uplink) delay(now time.Time) {
	u.backoff = min(max(2*u.backoff, minReassocBackoff), maxReassocBackoff)
	u.notBefore = now.Add(u.backoff)
}

// fail closes the association of generation gen, which returned err, unless
// it has already been replaced, and starts re-opening it.
func (u *uplink) fail(gen uint64, err error) {
	u.mu.Lock()
	if u.cur.a == nil || u.cur.gen != gen {
		u.mu.Unlock()
		return
	}
	a := u.cur.a
	u.cur = liveAssoc{}
	now := time.Now()
	if now.Sub(u.since) < maxReassocBackoff {
		u.delay(now)
	} else {
		u.backoff, u.notBefore = 0, time.Time{}
	}
	u.since = now
	if !u.dialing && !u.closed {
		u.dialing = true
		u.wg.Go(u.reassociate)
	}
	u.mu.Unlock()
	a.Close()
	u.log.Debug("socks5 udp association lost", "err", err)
}

// close closes the current association and waits for an attempt in flight,
// whose ctx the caller has ended. Nothing is opened after it.
func (u *uplink) close() {
	u.mu.Lock()
	u.closed = true
	a := u.cur.a
	u.cur = liveAssoc{}
	u.mu.Unlock()
	if a != nil {
		a.Close()
	}
	u.wg.Wait()
}
