package exit

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
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/internal/udpbatch"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// maxSourceHeader is the longest frame header the exit writes: LEN, ATYP,
// an IPv6 address and a port. Payloads are read behind it, so the header is
// written in place without a copy.
const maxSourceHeader = 2 + 1 + 16 + 2

// associate serves a UDP association on st: one unconnected socket, any
// number of destinations, and replies or unsolicited datagrams from any
// address relayed back (endpoint-independent mapping and filtering).
func (e *Server) associate(ctx context.Context, log *slog.Logger, st *yamux.Stream, c *client) {
	if !c.acquireUDP(e.maxUDP()) {
		e.stats.udp.refused.Add(1)
		wire.Respond(st, wire.Response{Status: wire.StatusNotAllowed})
		st.Close()
		return
	}
	defer c.releaseUDP()

	conn, releasePort, err := c.listenUDP()
	if err != nil {
		log.Warn("udp association", "err", err)
		wire.Respond(st, wire.Response{Status: wire.StatusGeneralFailure})
		st.Close()
		return
	}
	defer releasePort()
	// A DHT node receives bursts from many peers at once.
	conn.SetReadBuffer(2 << 20)
	conn.SetWriteBuffer(2 << 20)
	port := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	bc, err := udpbatch.New(conn, udpBatch)
	if err != nil {
		log.Warn("udp association", "err", err)
		wire.Respond(st, wire.Response{Status: wire.StatusGeneralFailure})
		conn.Close()
		st.Close()
		return
	}
	var last atomic.Int64 // unix nanoseconds of the last datagram either way
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	in := newUDPIn(ctx, e, c, conn, bc, &last)
	// Before the answer: the client sends nothing until it has it.
	st.SetDeliver(in.deliver)
	// Active before the answer, as a forward is: a client that has its
	// answer finds its association counted.
	e.stats.udp.active.Add(1)
	defer e.stats.udp.active.Add(-1)
	defer in.end() // on every way out: the resolver ends with the association
	if err := wire.Respond(st, wire.Response{Status: wire.StatusOK, Bound: wire.Addr{Port: port}}); err != nil {
		conn.Close()
		st.Reset()
		return
	}
	e.stats.udp.associations.Add(1)
	log.Debug("udp association open", "stream", st.StreamID(), "port", port)

	var wg sync.WaitGroup
	wg.Go(func() {
		e.udpToClient(st, conn, c, &last)
		st.Close()
	})
	wg.Go(func() { e.expireIdle(ctx, st, conn, &last, done) })
	io.Copy(io.Discard, st) // waits for the stream's end: its data goes to udpIn
	close(done)
	conn.Close()
	st.Close()
	wg.Wait()
	log.Debug("udp association closed", "stream", st.StreamID(), "port", port)
}

// udpIn sends the client's datagrams on as the session's receive loop
// hands the association's stream over (SetDeliver), so no goroutine wakes
// for them. It must never wait: the receive loop reads every stream of the
// client's link: a datagram for a name is sent at once only if the name
// is in the cache, and otherwise by the association's resolver.
//
// The receive loop may still hand it a piece after the association has
// ended (one under way as the stream closed): the socket is closed then,
// and no resolver starts.
type udpIn struct {
	e    *Server
	ctx  context.Context // the association's: ended by end
	stop context.CancelFunc
	c    *client
	conn *net.UDPConn
	bc   *udpbatch.Conn
	last *atomic.Int64

	frames wire.Frames
	ms     []udpbatch.Message
	each   func(body []byte)

	named   chan namedDatagram // to the resolver, once started
	rbc     *udpbatch.Conn     // the resolver's sends
	waiting atomic.Int64       // payload bytes the resolver holds
	mu      sync.Mutex         // guards ended and the resolver's start
	ended   bool
	running sync.WaitGroup // the resolver
}

func newUDPIn(ctx context.Context, e *Server, c *client, conn *net.UDPConn, bc *udpbatch.Conn, last *atomic.Int64) *udpIn {
	ctx, stop := context.WithCancel(ctx)
	u := &udpIn{e: e, ctx: ctx, stop: stop, c: c, conn: conn, bc: bc, last: last, ms: make([]udpbatch.Message, 0, udpBatch)}
	u.each = u.datagram
	return u
}

// end stops the resolver, abandoning a lookup under way, and returns once
// it has ended; none starts after.
func (u *udpIn) end() {
	u.stop()
	u.mu.Lock()
	u.ended = true
	u.mu.Unlock()
	u.running.Wait()
}

// deliver takes a piece of the stream: whole frames, and perhaps the end
// of one cut at the last piece's end and the start of the next. It always
// takes it.
func (u *udpIn) deliver(p []byte) bool {
	u.frames.Split(p, u.each)
	u.send()
	return true
}

// datagram queues the datagram of one frame body, or drops it.
func (u *udpIn) datagram(body []byte) {
	e := u.e
	dst, payload, err := wire.ParseDatagram(body)
	if err != nil {
		e.stats.udp.dropMalformed.Add(1)
		return
	}
	ip, ok := u.c.probeDestination(dst)
	if !ok && !dst.IP.IsValid() {
		ips, known := e.names.cached(dst.Name)
		if !known {
			u.resolve(dst, payload)
			return
		}
		ip, ok = e.pickAddr(ips, dst.Port)
	} else if !ok {
		ip, ok = e.udpDestination(u.ctx, dst)
	}
	if !ok || !e.allowDatagram(u.c, len(payload)) {
		return
	}
	if len(u.ms) == udpBatch {
		u.send()
	}
	u.ms = append(u.ms, udpbatch.Message{Buf: payload, Addr: netip.AddrPortFrom(ip.Unmap(), dst.Port)})
}

// resolve hands a datagram for a name not in the cache yet to the
// association's resolver, which looks names up one at a time, in order:
// a lookup may take seconds. At most maxResolving datagrams, of
// maxResolvingBytes in all, wait; more are dropped, as a UDP tracker's
// client asks again.
func (u *udpIn) resolve(dst wire.Addr, payload []byte) {
	if u.named == nil && !u.startResolver() {
		return // the association has ended
	}
	n := int64(len(payload))
	if u.waiting.Add(n) > maxResolvingBytes {
		u.waiting.Add(-n)
		u.e.stats.udp.dropResolve.Add(1)
		return
	}
	select {
	case u.named <- namedDatagram{dst, append([]byte(nil), payload...)}:
	default:
		u.waiting.Add(-n)
		u.e.stats.udp.dropResolve.Add(1)
	}
}

// startResolver starts the resolver, unless the association has ended.
func (u *udpIn) startResolver() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ended {
		return false
	}
	rbc, err := udpbatch.New(u.conn, 1)
	if err != nil {
		return false // as udpbatch.New(conn) succeeded before, it does not fail
	}
	u.rbc = rbc
	u.named = make(chan namedDatagram, maxResolving)
	u.running.Go(u.resolver)
	return true
}

type namedDatagram struct {
	dst     wire.Addr
	payload []byte
}

// maxResolving and maxResolvingBytes bound the datagrams of an
// association that wait for a name: a tracker's announce is about 100
// bytes, and the bound keeps a client from parking megabytes at the exit.
const (
	maxResolving      = 64
	maxResolvingBytes = 256 << 10
)

// resolver sends the datagrams for names not in the cache until the
// association ends.
func (u *udpIn) resolver() {
	for {
		select {
		case <-u.ctx.Done():
			return
		case d := <-u.named:
			if u.ctx.Err() != nil {
				return // ended: a lookup now would fail at once
			}
			ip, ok := u.e.udpDestination(u.ctx, d.dst)
			if ok && u.e.allowDatagram(u.c, len(d.payload)) {
				u.sendOne(d.payload, netip.AddrPortFrom(ip.Unmap(), d.dst.Port))
			}
			u.waiting.Add(-int64(len(d.payload)))
		}
	}
}

// send sends the queued datagrams, never waiting for room in the socket's
// send buffer: one that finds none is dropped, as on a congested link.
func (u *udpIn) send() {
	e := u.e
	for rest := u.ms; len(rest) > 0; {
		n, err := u.bc.WriteBatchNow(rest)
		u.sent(rest[:n])
		if n == len(rest) || errors.Is(err, net.ErrClosed) {
			break
		}
		e.stats.udp.dropSend.Add(1)
		rest = rest[n+1:]
	}
	u.ms = u.ms[:0]
}

// sendOne sends one datagram for the resolver. It does not wait for room
// in the socket's send buffer either: a send that waits holds the socket's
// write lock, and the receive loop's next send to the socket would wait
// for it.
func (u *udpIn) sendOne(payload []byte, dst netip.AddrPort) {
	m := []udpbatch.Message{{Buf: payload, Addr: dst}}
	if _, err := u.rbc.WriteBatchNow(m); err != nil {
		if !errors.Is(err, net.ErrClosed) {
			u.e.stats.udp.dropSend.Add(1)
		}
		return
	}
	u.sent(m)
}

// sent counts datagrams sent.
func (u *udpIn) sent(ms []udpbatch.Message) {
	e := u.e
	for _, m := range ms {
		e.stats.udp.datagramsOut.Add(1)
		e.stats.udp.bytesOut.Add(uint64(len(m.Buf)))
		u.c.carried.Add(uint64(len(m.Buf)))
	}
	if len(ms) > 0 {
		u.last.Store(time.Now().UnixNano())
	}
}

// udpBatch is the most datagrams an association moves per system call;
// batchSlot, the room for each datagram but the first of a batch read from
// the socket (which has room for any).
const (
	udpBatch  = 32
	batchSlot = 2048
)

// maxBatchFrames bounds the frames written to the stream at once: what
// fits in one yamux frame.
const maxBatchFrames = 60 << 10

// udpDestination picks the address a datagram for dst goes to: dst's IP,
// or the first address of its name, that the policy allows. It counts the
// drop when there is none.
func (e *Server) udpDestination(ctx context.Context, dst wire.Addr) (netip.Addr, bool) {
	if dst.IP.IsValid() {
		if e.policy.Check(dst.IP, dst.Port) != nil {
			e.stats.udp.dropPolicy.Add(1)
			return netip.Addr{}, false
		}
		return dst.IP, true
	}
	ips, err := e.names.lookup(ctx, dst.Name)
	if err != nil {
		e.stats.udp.dropResolve.Add(1)
		return netip.Addr{}, false
	}
	return e.pickAddr(ips, dst.Port)
}

// pickAddr returns the first of a name's addresses that the policy allows
// at port, and counts the drop when there is none.
func (e *Server) pickAddr(ips []netip.Addr, port uint16) (netip.Addr, bool) {
	if len(ips) == 0 {
		e.stats.udp.dropResolve.Add(1)
		return netip.Addr{}, false
	}
	for _, ip := range ips {
		if e.policy.Check(ip, port) == nil {
			return ip, true
		}
	}
	e.stats.udp.dropPolicy.Add(1)
	return netip.Addr{}, false
}

// udpToClient relays every datagram the socket receives, from any address,
// until the socket or the stream fails. The datagrams of one read from the
// socket go to the stream in one write.
func (e *Server) udpToClient(st *yamux.Stream, conn *net.UDPConn, c *client, last *atomic.Int64) {
	bc, err := udpbatch.New(conn, udpBatch)
	if err != nil {
		return
	}
	ms := make([]udpbatch.Message, udpBatch)
	ms[0].Buf = make([]byte, wire.MaxDatagram)
	slots := make([]byte, (udpBatch-1)*batchSlot)
	for i := 1; i < udpBatch; i++ {
		ms[i].Buf = slots[(i-1)*batchSlot : i*batchSlot : i*batchSlot]
	}
	out := make([]byte, 0, maxBatchFrames+maxSourceHeader+wire.MaxDatagram)
	for {
		n, err := bc.ReadBatch(ms)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP errors surfacing on the socket
		}
		out = out[:0]
		for _, m := range ms[:n] {
			if m.Trunc {
				e.stats.udp.dropTooLong.Add(1)
				continue
			}
			if !e.allowDatagram(c, m.N) {
				continue
			}
			if len(out) > 0 && len(out)+maxSourceHeader+m.N > maxBatchFrames {
				if _, err := st.Write(out); err != nil {
					return
				}
				out = out[:0]
			}
			a := wire.Addr{IP: m.Addr.Addr(), Port: m.Addr.Port()}
			out, _ = wire.AppendDatagram(out, a, m.Buf[:m.N]) // an IP always fits
			e.stats.udp.datagramsIn.Add(1)
			e.stats.udp.bytesIn.Add(uint64(m.N))
			c.carried.Add(uint64(m.N))
		}
		if len(out) > 0 {
			if _, err := st.Write(out); err != nil {
				return
			}
			last.Store(time.Now().UnixNano())
		}
	}
}

// expireIdle closes the association when no datagram has passed either way
// for the idle timeout.
func (e *Server) expireIdle(ctx context.Context, st *yamux.Stream, conn *net.UDPConn, last *atomic.Int64, done <-chan struct{}) {
	idle := e.udpIdle()
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			conn.Close()
			st.Close()
			return
		case <-t.C:
			quiet := time.Since(time.Unix(0, last.Load()))
			if quiet >= idle {
				e.stats.udp.expiredIdle.Add(1)
				conn.Close()
				st.Close()
				return
			}
			t.Reset(idle - quiet)
		}
	}
}

// allowDatagram charges a datagram of n bytes to the client's rate limit,
// if it has one. Over the limit the datagram is dropped, as a congested
// router would, rather than queued: a UDP socket has no back-pressure to
// give, and uTP and DHT expect loss.
func (e *Server) allowDatagram(c *client, n int) bool {
	if c.limiter == nil {
		return true
	}
	if !c.limiter.AllowN(time.Now(), n) {
		e.stats.udp.dropRate.Add(1)
		return false
	}
	e.stats.limits.rateBytes.Add(uint64(n))
	return true
}

func (e *Server) maxUDP() int {
	if e.cfg.MaxUDPPerClient > 0 {
		return e.cfg.MaxUDPPerClient
	}
	return 16
}

func (e *Server) udpIdle() time.Duration { return orDefault(e.cfg.UDPIdleTimeout, 5*time.Minute) }

// nameCache resolves destination names of datagrams, remembering answers
// for a while: a UDP tracker is asked again every few minutes. The policy is
// not its business: each datagram is judged on the address it goes to.
type nameCache struct {
	resolver *net.Resolver
	mu       sync.Mutex
	entries  map[string]nameEntry
}

type nameEntry struct {
	ips     []netip.Addr // empty for a negative entry
	expires time.Time
}

const (
	nameTTL         = 5 * time.Minute
	nameNegativeTTL = 30 * time.Second
	nameCacheMax    = 4096
	nameMaxAddrs    = 4
	nameLookupLimit = 5 * time.Second
)

// cached returns name's addresses from the cache, none for a name known not
// to resolve, and reports whether the cache had a live answer: if not,
// lookup must ask.
func (nc *nameCache) cached(name string) ([]netip.Addr, bool) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	ent, ok := nc.entries[name]
	if !ok || time.Now().After(ent.expires) {
		return nil, false
	}
	return ent.ips, true
}

// lookup returns up to nameMaxAddrs addresses of name.
func (nc *nameCache) lookup(ctx context.Context, name string) ([]netip.Addr, error) {
	now := time.Now()
	nc.mu.Lock()
	ent, ok := nc.entries[name]
	nc.mu.Unlock()
	if !ok || now.After(ent.expires) {
		ctx, cancel := context.WithTimeout(ctx, nameLookupLimit)
		ips, err := nc.resolver.LookupNetIP(ctx, "ip", name)
		cancel()
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil, err // shutting down: remember nothing
		}
		ent = nameEntry{expires: now.Add(nameNegativeTTL)}
		if len(ips) > 0 {
			ent = nameEntry{ips: ips[:min(len(ips), nameMaxAddrs)], expires: now.Add(nameTTL)}
		}
		nc.mu.Lock()
		if nc.entries == nil {
			nc.entries = make(map[string]nameEntry)
		}
		if len(nc.entries) >= nameCacheMax {
			for k := range nc.entries { // evict an arbitrary entry
				delete(nc.entries, k)
				break
			}
		}
		nc.entries[name] = ent
		nc.mu.Unlock()
	}
	if len(ent.ips) == 0 {
		return nil, fmt.Errorf("%s does not resolve", name)
	}
	return ent.ips, nil
}
