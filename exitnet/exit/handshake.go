package exit

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// handshakes bounds the connections whose TLS handshake has not finished:
// each holds a goroutine, a socket and TLS state, and anyone can open them
// without a key. Past max in all, or perSource from one source address (an
// IPv6 one by its /64), the oldest is closed to make room: a client's
// handshake takes a round trip or two, so the oldest are those that stall
// on purpose. Established links are not counted.
type handshakes struct {
	max, perSource int

	mu       sync.Mutex
	order    list.List // of *handshake, oldest first
	bySource map[netip.Addr]int

	shed atomic.Uint64
}

type handshake struct {
	conn   net.Conn
	source netip.Addr
	elem   *list.Element // nil once ended or shed
}

// sourceOf is the key a connection's handshakes are counted under.
func sourceOf(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// begin counts conn's handshake, first closing the oldest pending ones
// from its source, or from anywhere, that are over the bounds.
func (h *handshakes) begin(conn net.Conn) *handshake {
	hs := &handshake{conn: conn, source: sourceOf(conn.RemoteAddr())}
	var shed []net.Conn
	h.mu.Lock()
	if h.bySource == nil {
		h.bySource = make(map[netip.Addr]int)
	}
	if h.bySource[hs.source] >= h.perSource {
		for el := h.order.Front(); el != nil; el = el.Next() {
			if old := el.Value.(*handshake); old.source == hs.source {
				shed = append(shed, h.removeLocked(old))
				break
			}
		}
	}
	for h.order.Len() >= h.max {
		shed = append(shed, h.removeLocked(h.order.Front().Value.(*handshake)))
	}
	hs.elem = h.order.PushBack(hs)
	h.bySource[hs.source]++
	h.mu.Unlock()
	for _, c := range shed {
		h.shed.Add(1)
		c.Close()
	}
	return hs
}

// end stops counting hs: its handshake finished or failed.
func (h *handshakes) end(hs *handshake) {
	h.mu.Lock()
	if hs.elem != nil {
		h.removeLocked(hs)
	}
	h.mu.Unlock()
}

func (h *handshakes) removeLocked(hs *handshake) net.Conn {
	h.order.Remove(hs.elem)
	hs.elem = nil
	if h.bySource[hs.source]--; h.bySource[hs.source] <= 0 {
		delete(h.bySource, hs.source)
	}
	return hs.conn
}

// pending counts the handshakes in progress.
func (h *handshakes) pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.order.Len()
}

// pendingListener counts each connection it accepts as a pending handshake
// before handing it on, so that the count is taken in the accept loop.
type pendingListener struct {
	net.Listener
	h *handshakes
}

func (l *pendingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &pendingConn{Conn: c, hs: l.h.begin(c)}, nil
}

// pendingConn is an accepted connection with its pending handshake.
type pendingConn struct {
	net.Conn
	hs *handshake
}
