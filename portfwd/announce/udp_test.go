package announce

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

func connectReq(txn uint32) []byte {
	p := make([]byte, 16)
	binary.BigEndian.PutUint64(p, udpProtocolID)
	binary.BigEndian.PutUint32(p[12:], txn)
	return p
}

func connectResp(txn uint32, id uint64) []byte {
	p := make([]byte, 16)
	binary.BigEndian.PutUint32(p[4:], txn)
	binary.BigEndian.PutUint64(p[8:], id)
	return p
}

func announceReq(id uint64, ip [4]byte, port uint16) []byte {
	p := make([]byte, 98)
	binary.BigEndian.PutUint64(p, id)
	binary.BigEndian.PutUint32(p[8:], actionAnnounce)
	binary.BigEndian.PutUint32(p[12:], 77)
	for i := 16; i < 56; i++ { // info_hash, peer_id
		p[i] = byte(i)
	}
	binary.BigEndian.PutUint64(p[72:], 1000) // left
	copy(p[84:], ip[:])
	binary.BigEndian.PutUint32(p[88:], 0xdeadbeef) // key
	binary.BigEndian.PutUint32(p[92:], 0xffffffff) // num_want
	binary.BigEndian.PutUint16(p[96:], port)
	return p
}

func TestUDPTrackerExchange(t *testing.T) {
	var c Counters
	u := &UDPTrackers{Opt: &Options{Port: func() uint16 { return 40001 }, Own: own, Count: &c}}
	trk := Dest{Host: "10.200.4.2", Port: 6969}
	trkSrc := netip.MustParseAddrPort("10.200.4.2:6969")
	named := Dest{Host: "tracker.example", Port: 2710}
	other := Dest{Host: "198.51.100.7", Port: 6881}

	// Before any connect, an announce-shaped datagram is nobody's announce.
	look := announceReq(0x1122, [4]byte{}, 1)
	if got := u.Outgoing(look, trk, nil); &got[0] != &look[0] {
		t.Fatal("rewrote an announce to a destination that never answered a connect")
	}

	if got := u.Outgoing(connectReq(5), trk, nil); !bytes.Equal(got, connectReq(5)) {
		t.Fatal("connect request changed")
	}
	u.Outgoing(connectReq(6), named, nil)
	// A wrong transaction, and the right one from a stranger, teach nothing.
	u.Incoming(connectResp(99, 0x1122), trkSrc)
	u.Incoming(connectResp(5, 0x1122), netip.MustParseAddrPort("10.200.4.3:6969"))
	if got := u.Outgoing(announceReq(0x1122, [4]byte{}, 1), trk, nil); binary.BigEndian.Uint16(got[96:]) != 1 {
		t.Fatal("rewrote before the tracker answered")
	}
	u.Incoming(connectResp(5, 0x1122), trkSrc)
	u.Incoming(connectResp(6, 0x3344), netip.MustParseAddrPort("203.0.113.5:2710")) // a name: any address, its port

	in := announceReq(0x1122, [4]byte{10, 1, 2, 3}, 1)
	orig := bytes.Clone(in)
	got := u.Outgoing(in, trk, nil)
	want := announceReq(0x1122, [4]byte{}, 40001)
	if !bytes.Equal(got, want) {
		t.Errorf("announce:\ngot  %x\nwant %x", got, want)
	}
	if !bytes.Equal(in, orig) {
		t.Error("the caller's datagram was modified")
	}
	// A public IP field that is not the user's stays.
	if got := u.Outgoing(announceReq(0x3344, [4]byte{203, 0, 113, 1}, 6881), named, nil); !bytes.Equal(got, announceReq(0x3344, [4]byte{203, 0, 113, 1}, 40001)) {
		t.Errorf("announce to a named tracker: %x", got)
	}
	// An unknown connection ID to a tracker, and a look-alike elsewhere.
	for _, tc := range []struct {
		p   []byte
		dst Dest
	}{{announceReq(0x9999, [4]byte{}, 1), trk}, {announceReq(0x1122, [4]byte{}, 1), other}, {announceReq(0x3344, [4]byte{}, 1), trk}} {
		if got := u.Outgoing(tc.p, tc.dst, nil); &got[0] != &tc.p[0] {
			t.Errorf("rewrote a look-alike to %v", tc.dst)
		}
	}
	// With BEP 41 options after the 98 bytes, the options are kept.
	long := append(announceReq(0x1122, [4]byte{}, 1), 0x2, 0x3, 'a', 'b', 'c', 0x0)
	got = u.Outgoing(long, trk, nil)
	if binary.BigEndian.Uint16(got[96:]) != 40001 || !bytes.Equal(got[98:], long[98:]) {
		t.Errorf("announce with options: %x", got)
	}
	st := c.Stats()
	if st.UDP != 3 || st.PortRewrites != 3 || st.AddrStrips != 1 {
		t.Errorf("stats %+v", st)
	}

	// No forwarded port: nothing changes.
	u.Opt.Port = func() uint16 { return 0 }
	p := announceReq(0x1122, [4]byte{}, 1)
	if got := u.Outgoing(p, trk, nil); &got[0] != &p[0] {
		t.Error("rewrote with no forwarded port")
	}
}

// TestUDPTrackersBounded: many connects and answers hold bounded memory.
func TestUDPTrackersBounded(t *testing.T) {
	u := &UDPTrackers{Opt: &Options{Port: func() uint16 { return 1 }}}
	for i := range 10000 {
		d := Dest{Host: netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}).String(), Port: 6969}
		u.Outgoing(connectReq(uint32(i)), d, nil)
		u.Incoming(connectResp(uint32(i), uint64(i)), netip.AddrPortFrom(netip.MustParseAddr(d.Host), 6969))
	}
	if len(u.trackers) > maxTrackers || u.waiting.Load() < 0 || u.waiting.Load() > maxPending {
		t.Errorf("%d trackers, %d waiting", len(u.trackers), u.waiting.Load())
	}
}
