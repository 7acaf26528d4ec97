package exit

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
	// Active before the answer, as a forward is: a client that has its
	// answer finds its association counted.
	e.stats.udp.active.Add(1)
	defer e.stats.udp.active.Add(-1)
	if err := wire.Respond(st, wire.Response{Status: wire.StatusOK, Bound: wire.Addr{Port: port}}); err != nil {
		conn.Close()
		st.Reset()
		return
	}
	e.stats.udp.associations.Add(1)
	log.Debug("udp association open", "stream", st.StreamID(), "port", port)

	var last atomic.Int64 // unix nanoseconds of the last datagram either way
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		e.udpToClient(st, conn, c, &last)
		st.Close()
	})
	wg.Go(func() { e.expireIdle(ctx, st, conn, &last, done) })
	e.udpFromClient(ctx, st, conn, c, &last)
	close(done)
	conn.Close()
	st.Close()
	wg.Wait()
	log.Debug("udp association closed", "stream", st.StreamID(), "port", port)
}

// udpFromClient sends the client's datagrams until the stream ends. The
// frames that one read from the stream brings are sent together, several
// per system call.
func (e *Server) udpFromClient(ctx context.Context, st *yamux.Stream, conn *net.UDPConn, c *client, last *atomic.Int64) {
	bc, err := udpbatch.New(conn, udpBatch)
	if err != nil {
		return
	}
	r := bufio.NewReaderSize(st, wire.MaxFrameLen)
	ms := make([]udpbatch.Message, 0, udpBatch)
	for {
		// Frames already read are peeked, not copied: the payloads stay
		// where they are until the batch is sent.
		ms = ms[:0]
		for len(ms) < udpBatch && (len(ms) == 0 || frameBuffered(r)) {
			body, err := wire.PeekFrame(r)
			if err != nil {
				return
			}
			dst, payload, err := wire.ParseDatagram(body)
			r.Discard(2 + len(body)) // the bytes stay put until the next read
			if err != nil {
				e.stats.udp.dropMalformed.Add(1)
				continue
			}
			ip, ok := c.probeDestination(dst)
			if !ok {
				ip, ok = e.udpDestination(ctx, dst)
			}
			if !ok {
				continue
			}
			if !e.allowDatagram(c, len(payload)) {
				continue
			}
			ms = append(ms, udpbatch.Message{Buf: payload, Addr: netip.AddrPortFrom(ip.Unmap(), dst.Port)})
		}
		for rest := ms; len(rest) > 0; {
			n, err := bc.WriteBatch(rest)
			for _, m := range rest[:n] {
				e.stats.udp.datagramsOut.Add(1)
				e.stats.udp.bytesOut.Add(uint64(len(m.Buf)))
				c.carried.Add(uint64(len(m.Buf)))
			}
			if n > 0 {
				last.Store(time.Now().UnixNano())
			}
			if n == len(rest) {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.stats.udp.dropSend.Add(1)
			rest = rest[n+1:]
		}
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

// frameBuffered reports whether r holds a whole frame.
func frameBuffered(r *bufio.Reader) bool {
	n := r.Buffered()
	if n < 2 {
		return false
	}
	h, _ := r.Peek(2)
	return n >= 2+int(binary.BigEndian.Uint16(h))
}

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
	for _, ip := range ips {
		if e.policy.Check(ip, dst.Port) == nil {
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
