package announce

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
)

// BEP 15 layout.
const (
	udpProtocolID  = 0x41727101980 // a connect request's first 8 bytes
	udpConnectLen  = 16            // connect request and response
	udpAnnounceLen = 98            // announce request, without BEP 41 options
	udpActionAt    = 8             // in a request; 0 in a response
	udpIPAt        = 84            // an announce's IPv4 address, 0 by default
	udpPortAt      = 96            // an announce's port
	actionConnect  = 0
	actionAnnounce = 1
	maxPending     = 16 // connect requests awaiting an answer, per association
	maxTrackers    = 64 // trackers remembered per association
	connIDsKept    = 4  // connection IDs remembered per tracker
)

// Dest is a datagram's destination as the application named it: Host is
// an IP in text form or a name the far side resolves.
type Dest struct {
	Host string
	Port uint16
}

// UDPTrackers rewrites the port of the BEP 15 announces one UDP
// association sends, and only those: an announce is recognised only when it
// goes to a destination that answered a connect request on the same
// association, and carries the connection ID that destination gave, so no
// other datagram (a uTP or DHT packet of the same length) can be taken for
// one. Outgoing and Incoming may be called concurrently.
type UDPTrackers struct {
	Opt *Options

	waiting atomic.Int32 // connect requests pending: Incoming looks only while some are

	mu       sync.Mutex
	pending  [maxPending]pendingConnect
	next     int
	trackers map[Dest]*tracker
}

type pendingConnect struct {
	dst   Dest
	txn   uint32
	valid bool
}

type tracker struct {
	ids  [connIDsKept]uint64
	n    int // ids filled
	next int
}

// IsConnectRequest reports whether p is a BEP 15 connect request.
func IsConnectRequest(p []byte) bool {
	return len(p) >= udpConnectLen && binary.BigEndian.Uint64(p) == udpProtocolID &&
		binary.BigEndian.Uint32(p[udpActionAt:]) == actionConnect
}

// Outgoing looks at one datagram the application sends to dst. It returns
// p itself, or the datagram rewritten in buf (grown when too small) when p
// is an announce to a known tracker while a port is forwarded.
func (u *UDPTrackers) Outgoing(p []byte, dst Dest, buf []byte) []byte {
	switch {
	case len(p) == udpConnectLen && IsConnectRequest(p):
		u.mu.Lock()
		if !u.pending[u.next].valid {
			u.waiting.Add(1)
		}
		u.pending[u.next] = pendingConnect{dst: dst, txn: binary.BigEndian.Uint32(p[12:]), valid: true}
		u.next = (u.next + 1) % maxPending
		u.mu.Unlock()
		return p
	case len(p) < udpAnnounceLen || binary.BigEndian.Uint32(p[udpActionAt:]) != actionAnnounce:
		return p
	}
	id := binary.BigEndian.Uint64(p)
	u.mu.Lock()
	t := u.trackers[dst]
	known := t != nil && t.has(id)
	u.mu.Unlock()
	if !known {
		return p
	}
	port := u.Opt.port()
	if port == 0 {
		return p
	}
	r := Result{Announce: true}
	buf = append(buf[:0], p...)
	if binary.BigEndian.Uint16(buf[udpPortAt:]) != port {
		binary.BigEndian.PutUint16(buf[udpPortAt:], port)
		r.Rewritten = true
	}
	if ip := netip.AddrFrom4([4]byte(buf[udpIPAt : udpIPAt+4])); !ip.IsUnspecified() && u.Opt.own(ip) {
		copy(buf[udpIPAt:udpIPAt+4], []byte{0, 0, 0, 0})
		r.Stripped = 1
	}
	u.Opt.count(true, r)
	if !r.Rewritten && r.Stripped == 0 {
		return p
	}
	return buf
}

// Incoming looks at one datagram the association receives from src, for
// the answers to connect requests.
func (u *UDPTrackers) Incoming(p []byte, src netip.AddrPort) {
	if u.waiting.Load() <= 0 || len(p) < udpConnectLen || binary.BigEndian.Uint32(p) != actionConnect {
		return
	}
	txn := binary.BigEndian.Uint32(p[4:])
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := range u.pending {
		pc := &u.pending[i]
		if !pc.valid || pc.txn != txn || !pc.dst.answeredBy(src) {
			continue
		}
		pc.valid = false
		u.waiting.Add(-1)
		if u.trackers == nil {
			u.trackers = make(map[Dest]*tracker)
		}
		t := u.trackers[pc.dst]
		if t == nil {
			if len(u.trackers) >= maxTrackers {
				for k := range u.trackers { // forget an arbitrary one
					delete(u.trackers, k)
					break
				}
			}
			t = &tracker{}
			u.trackers[pc.dst] = t
		}
		t.add(binary.BigEndian.Uint64(p[8:]))
		return
	}
}

// answeredBy reports whether a datagram from src can be d's answer: from
// d itself when d is an IP, from d's port when d is a name (resolved at the
// far side, so its address is not known here).
func (d Dest) answeredBy(src netip.AddrPort) bool {
	if d.Port != src.Port() {
		return false
	}
	a, err := netip.ParseAddr(d.Host)
	if err != nil {
		return true
	}
	return a.Unmap().WithZone("") == src.Addr().Unmap().WithZone("")
}

func (t *tracker) has(id uint64) bool {
	for _, v := range t.ids[:t.n] {
		if v == id {
			return true
		}
	}
	return false
}

func (t *tracker) add(id uint64) {
	if t.has(id) {
		return
	}
	t.ids[t.next] = id
	t.next = (t.next + 1) % connIDsKept
	t.n = min(t.n+1, connIDsKept)
}
