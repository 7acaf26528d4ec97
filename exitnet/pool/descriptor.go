package pool

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// ErrUnsuitable wraps why the pool will not use an exit.
var ErrUnsuitable = errors.New("exit unsuitable")

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
	resp, err := wire.Call(ctx, st, wire.Request{Kind: wire.KindDescriptor}, 10*time.Second)
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
