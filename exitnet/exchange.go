package exitnet

import (
	"context"
	"errors"
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

// ErrUnsuitable wraps why the pool will not use an exit.
var ErrUnsuitable = errors.New("exit unsuitable")

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
func (e *Exit) Descriptor() (discovery.SignedDescriptor, error) {
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
func (e *Exit) describe(now time.Time) discovery.Descriptor {
	capacity := e.cfg.Capacity
	if capacity <= 0 {
		capacity = defaultCapacity
	}
	e.mu.Lock()
	clients := len(e.clients)
	e.mu.Unlock()
	d := discovery.Descriptor{
		ID:              e.cfg.Link.Identity.ID(),
		Addrs:           e.cfg.Addrs,
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
	return d
}

// Learn keeps another exit's descriptor to pass on to clients. It verifies
// it first; a newer descriptor of the same exit replaces the older.
func (e *Exit) Learn(s discovery.SignedDescriptor) error {
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
func (e *Exit) serveDescriptors(st *yamux.Stream) {
	defer st.Close()
	own, err := e.Descriptor()
	if err != nil {
		respond(st, wire.Response{Status: wire.StatusGeneralFailure})
		return
	}
	if respond(st, wire.Response{Status: wire.StatusOK}) != nil {
		return
	}
	e.desc.mu.Lock()
	all := make([]discovery.SignedDescriptor, 0, 1+len(e.desc.known))
	all = append(all, own)
	for _, k := range e.desc.known {
		all = append(all, k)
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

// fetchDescriptors asks the exit at the other end of sess for its
// descriptor and the ones it knows. The first must be the exit's own,
// verified against want; the others are verified on their own and those
// that fail are dropped (and counted by the caller through len).
func fetchDescriptors(ctx context.Context, sess *link.Session, want link.PeerID) (own discovery.Descriptor, others []discovery.Known, dropped int, err error) {
	st, err := requestDescriptors(ctx, sess)
	if err != nil {
		return discovery.Descriptor{}, nil, 0, err
	}
	defer st.Close()
	return discovery.ReadReply(st, want, time.Now())
}

// requestDescriptors asks the exit at the other end of sess for
// descriptors and returns the stream they follow on, with a read deadline.
func requestDescriptors(ctx context.Context, sess *link.Session) (*yamux.Stream, error) {
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := request(ctx, st, wire.Request{Kind: wire.KindDescriptor}, 10*time.Second)
	if err == nil && resp.Status != wire.StatusOK {
		err = &wire.Error{Status: resp.Status}
	}
	if err != nil {
		st.Reset()
		return nil, err
	}
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	return st, nil
}

// FetchDescriptor links to exit, reads its own verified descriptor and
// closes the link: how an exit learns of the exits its operator names.
func FetchDescriptor(ctx context.Context, cfg link.Config, exit link.ExitAddr) (discovery.SignedDescriptor, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	sess, err := link.Dial(ctx, cfg, exit)
	if err != nil {
		return discovery.SignedDescriptor{}, err
	}
	defer sess.Close()
	st, err := requestDescriptors(ctx, sess)
	if err != nil {
		return discovery.SignedDescriptor{}, err
	}
	defer st.Close()
	s, err := discovery.ReadSignedDescriptor(st)
	if err != nil {
		return discovery.SignedDescriptor{}, err
	}
	if _, err := s.Verify(exit.ID, time.Now()); err != nil {
		return discovery.SignedDescriptor{}, err
	}
	return s, nil
}
