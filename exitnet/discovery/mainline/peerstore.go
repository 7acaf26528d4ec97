package mainline

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
)

// Bounds of the peers this node stores for others (announce_peer) and returns (get_peers).
const (
	peerTTL           = 30 * time.Minute
	maxInfoHashes     = 1024
	maxPeersPerHash   = 256
	maxPortsPerIP     = 4
	maxPeersPerReply  = 50
	peerStoreSweepGap = time.Minute
)

// peerStore is a bounded, expiring peer_store.Interface. The library's in-memory store keeps one
// peer per IP and never forgets; this one keeps a few ports per IP (labs run several exits on one
// host), forgets after peerTTL, holds at most maxInfoHashes×maxPeersPerHash entries and answers
// with a random sample of at most maxPeersPerReply, so a flood in one swarm cannot hide the rest.
type peerStore struct {
	now func() time.Time

	mu        sync.Mutex
	hashes    map[peer_store.InfoHash]map[netip.AddrPort]time.Time
	lastSweep time.Time
}

var _ peer_store.Interface = (*peerStore)(nil)

func newPeerStore() *peerStore {
	return &peerStore{now: time.Now, hashes: make(map[peer_store.InfoHash]map[netip.AddrPort]time.Time)}
}

func (p *peerStore) AddPeer(ih peer_store.InfoHash, na krpc.NodeAddr) {
	ap, ok := nodeAddrPort(na)
	if !ok {
		return
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweepLocked(now)
	peers := p.hashes[ih]
	if peers == nil {
		if len(p.hashes) >= maxInfoHashes {
			return
		}
		peers = make(map[netip.AddrPort]time.Time)
		p.hashes[ih] = peers
	}
	if _, ok := peers[ap]; !ok {
		sameIP := 0
		for k := range peers {
			if k.Addr() == ap.Addr() {
				sameIP++
			}
		}
		if sameIP >= maxPortsPerIP || len(peers) >= maxPeersPerHash {
			evictOldest(peers, func(k netip.AddrPort) bool {
				return sameIP < maxPortsPerIP || k.Addr() == ap.Addr()
			})
		}
	}
	peers[ap] = now
}

// evictOldest removes the oldest entry that match accepts.
func evictOldest(peers map[netip.AddrPort]time.Time, match func(netip.AddrPort) bool) {
	var oldest netip.AddrPort
	var at time.Time
	for k, t := range peers {
		if match(k) && (at.IsZero() || t.Before(at)) {
			oldest, at = k, t
		}
	}
	delete(peers, oldest)
}

func (p *peerStore) GetPeers(ih peer_store.InfoHash) []krpc.NodeAddr {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var live []netip.AddrPort
	for ap, t := range p.hashes[ih] {
		if now.Sub(t) <= peerTTL {
			live = append(live, ap)
		}
	}
	return samplePeers(live, maxPeersPerReply)
}

// samplePeers picks at most max of peers at random, first at most two per /24 (IPv4) or /48
// (IPv6), then the rest: many peers announced from one network cannot crowd the others out.
func samplePeers(peers []netip.AddrPort, max int) []krpc.NodeAddr {
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	if len(peers) > max {
		perNet := make(map[netip.Prefix]int)
		var first, rest []netip.AddrPort
		for _, ap := range peers {
			k := netKey(ap.Addr())
			if perNet[k] < 2 {
				perNet[k]++
				first = append(first, ap)
			} else {
				rest = append(rest, ap)
			}
		}
		peers = append(first, rest...)[:max]
	}
	out := make([]krpc.NodeAddr, 0, len(peers))
	for _, ap := range peers {
		out = append(out, krpc.NodeAddr{IP: net.IP(ap.Addr().AsSlice()), Port: int(ap.Port())})
	}
	return out
}

func (p *peerStore) sweepLocked(now time.Time) {
	if now.Sub(p.lastSweep) < peerStoreSweepGap {
		return
	}
	p.lastSweep = now
	for ih, peers := range p.hashes {
		for k, t := range peers {
			if now.Sub(t) > peerTTL {
				delete(peers, k)
			}
		}
		if len(peers) == 0 {
			delete(p.hashes, ih)
		}
	}
}

// nodeAddrPort converts a KRPC address, rejecting what cannot be one.
func nodeAddrPort(na krpc.NodeAddr) (netip.AddrPort, bool) {
	a, ok := netip.AddrFromSlice(na.IP)
	if !ok || na.Port <= 0 || na.Port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(na.Port)), true
}
