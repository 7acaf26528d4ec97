package exit

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// connBudget bounds a kind of connection that anyone can open without a
// key: those whose handshake has not finished, and visitors to the exit's
// web site. Each holds a goroutine, a socket and TLS state. Past max in all,
// or perSource from one source address (an IPv6 one by its /64), the
// oldest is closed to make room: a client's handshake takes a round trip or
// two, so the oldest are those that stall on purpose. Established links are
// not counted.
type connBudget struct {
	max, perSource int

	mu       sync.Mutex
	order    list.List // of *budgeted, oldest first
	bySource map[netip.Addr]int

	shed atomic.Uint64
}

type budgeted struct {
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
	return hostOf(ta.AddrPort().Addr())
}

// hostOf is the address a remote host is counted under: an IPv4 address
// as it is, an IPv6 one by its /64, which one host usually holds whole.
func hostOf(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// begin counts conn's handshake, first closing the oldest pending ones
// from its source, or from anywhere, that are over the bounds.
func (h *connBudget) begin(conn net.Conn) *budgeted {
	hs := &budgeted{conn: conn, source: sourceOf(conn.RemoteAddr())}
	var shed []net.Conn
	h.mu.Lock()
	if h.bySource == nil {
		h.bySource = make(map[netip.Addr]int)
	}
	if h.bySource[hs.source] >= h.perSource {
		for el := h.order.Front(); el != nil; el = el.Next() {
			if old := el.Value.(*budgeted); old.source == hs.source {
				shed = append(shed, h.removeLocked(old))
				break
			}
		}
	}
	for h.order.Len() >= h.max {
		shed = append(shed, h.removeLocked(h.order.Front().Value.(*budgeted)))
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
func (h *connBudget) end(hs *budgeted) {
	h.mu.Lock()
	if hs.elem != nil {
		h.removeLocked(hs)
	}
	h.mu.Unlock()
}

func (h *connBudget) removeLocked(hs *budgeted) net.Conn {
	h.order.Remove(hs.elem)
	hs.elem = nil
	if h.bySource[hs.source]--; h.bySource[hs.source] <= 0 {
		delete(h.bySource, hs.source)
	}
	return hs.conn
}

// pending counts the handshakes in progress.
func (h *connBudget) pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.order.Len()
}

// pendingListener counts each connection it accepts as a pending handshake
// before handing it on, so that the count is taken in the accept loop.
type pendingListener struct {
	net.Listener
	h *connBudget
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
	hs *budgeted
}
