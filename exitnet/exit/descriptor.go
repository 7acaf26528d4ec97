package exit

import (
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

const (
	// descriptorRefresh is how often the exit signs a fresh one, so that
	// the load and free ports it reports stay current.
	descriptorRefresh = 10 * time.Minute
	// defaultCapacity is the client count an exit calls fully loaded when
	// its config says nothing.
	defaultCapacity = 256
)

// descriptors is the exit's own signed descriptor and those of the other
// exits it knows.
type descriptors struct {
	mu     sync.Mutex
	own    discovery.SignedDescriptor
	signed time.Time
	known  map[link.PeerID]discovery.SignedDescriptor
}

// Descriptor returns the exit's signed descriptor, signing a fresh one
// every descriptorRefresh.
func (e *Server) Descriptor() (discovery.SignedDescriptor, error) {
	e.desc.mu.Lock()
	defer e.desc.mu.Unlock()
	now := time.Now()
	if e.desc.own.Body != nil && now.Sub(e.desc.signed) < descriptorRefresh {
		return e.desc.own, nil
	}
	d := e.describe(now)
	s, err := d.Sign(e.cfg.Link.Identity)
	if err != nil {
		return discovery.SignedDescriptor{}, err
	}
	e.desc.own, e.desc.signed = s, now
	return s, nil
}

// describe says what the exit offers now.
func (e *Server) describe(now time.Time) discovery.Descriptor {
	capacity := e.cfg.Capacity
	if capacity <= 0 {
		capacity = defaultCapacity
	}
	e.mu.Lock()
	clients := len(e.clients)
	e.mu.Unlock()
	d := discovery.Descriptor{
		ID:              e.cfg.Link.Identity.ID(),
		Addrs:           e.Addrs(),
		TCP:             true,
		UDP:             true,
		P2P:             e.policy.CarriesP2P(),
		MaxUDPPerClient: e.maxUDP(),
		Bandwidth:       e.cfg.Bandwidth,
		Load:            min(float64(clients)/float64(capacity), 1),
		Policy:          e.policy.Summary(),
		Version:         e.cfg.Version,
		IssuedAt:        now,
		Expires:         now.Add(discovery.Lifetime),
	}
	if e.cfg.Ports != nil {
		d.Forward, d.FreePorts = true, e.cfg.Ports.Free()
	}
	d.Relay = e.relayOn()
	return d
}

// Learn keeps another exit's descriptor to pass on to clients. It verifies
// it first; a newer descriptor of the same exit replaces the older.
func (e *Server) Learn(s discovery.SignedDescriptor) error {
	d, err := s.Verify(link.PeerID{}, time.Now())
	if err != nil {
		return err
	}
	if d.ID == e.cfg.Link.Identity.ID() {
		return nil
	}
	e.desc.mu.Lock()
	defer e.desc.mu.Unlock()
	if e.desc.known == nil {
		e.desc.known = make(map[link.PeerID]discovery.SignedDescriptor)
	}
	now := time.Now()
	for id, k := range e.desc.known { // drop the expired
		if _, err := k.Verify(id, now); err != nil {
			delete(e.desc.known, id)
		}
	}
	if _, ok := e.desc.known[d.ID]; !ok && len(e.desc.known) >= discovery.MaxKnown {
		return fmt.Errorf("exit already knows %d others", discovery.MaxKnown)
	}
	e.desc.known[d.ID] = s
	return nil
}

// serveDescriptors answers a descriptor request: the exit's own
// descriptor, then those of the exits it knows, then the end of the stream.
func (e *Server) serveDescriptors(st *yamux.Stream) { e.writeDescriptors(st, true) }

// writeDescriptors answers a descriptor request with the exit's own
// descriptor, and with those of the exits it knows when known is set.
func (e *Server) writeDescriptors(st *yamux.Stream, known bool) {
	defer st.Close()
	own, err := e.Descriptor()
	if err != nil {
		wire.Respond(st, wire.Response{Status: wire.StatusGeneralFailure})
		return
	}
	if wire.Respond(st, wire.Response{Status: wire.StatusOK}) != nil {
		return
	}
	e.desc.mu.Lock()
	all := make([]discovery.SignedDescriptor, 0, 1+len(e.desc.known))
	all = append(all, own)
	for _, k := range e.desc.known {
		if known {
			all = append(all, k)
		}
	}
	e.desc.mu.Unlock()
	var buf []byte
	for _, s := range all {
		buf, err = s.AppendBinary(buf)
		if err != nil {
			return
		}
	}
	st.Write(buf)
}
