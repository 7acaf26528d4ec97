package discovery

import (
	"context"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// The client's half of descriptor exchange: a client reads an exit's
// descriptor before it sends anything through it, and an exit reads those of
// the exits its operator names, to pass them on.

// Fetch asks the exit at the other end of sess for its descriptor and the
// ones it knows. The first must be the exit's own,
// verified against want; the others are verified on their own and those
// that fail are dropped (and counted by the caller through len).
func Fetch(ctx context.Context, sess *link.Session, want link.PeerID) (own Descriptor, others []Known, dropped int, err error) {
	st, err := request(ctx, sess)
	if err != nil {
		return Descriptor{}, nil, 0, err
	}
	defer st.Close()
	return ReadReply(st, want, time.Now())
}

// request asks the exit at the other end of sess for
// descriptors and returns the stream they follow on, with a read deadline.
func request(ctx context.Context, sess *link.Session) (*yamux.Stream, error) {
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

// FetchOwn links to exit, reads its own verified descriptor and closes the
// link: how an exit learns of the exits its operator names.
func FetchOwn(ctx context.Context, cfg link.Config, exit link.ExitAddr) (SignedDescriptor, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	sess, err := link.Dial(ctx, cfg, exit)
	if err != nil {
		return SignedDescriptor{}, err
	}
	defer sess.Close()
	st, err := request(ctx, sess)
	if err != nil {
		return SignedDescriptor{}, err
	}
	defer st.Close()
	s, err := ReadSignedDescriptor(st)
	if err != nil {
		return SignedDescriptor{}, err
	}
	if _, err := s.Verify(exit.ID, time.Now()); err != nil {
		return SignedDescriptor{}, err
	}
	return s, nil
}

// FetchProven reads, over a link whose exit was not pinned (dialed by
// address only), the exit's own descriptor, verified against the peer ID
// the exit proved in the handshake (sess.Peer): an exit found by address
// becomes known only under the key it holds.
func FetchProven(ctx context.Context, sess *link.Session) (Known, error) {
	st, err := request(ctx, sess)
	if err != nil {
		return Known{}, err
	}
	defer st.Close()
	s, err := ReadSignedDescriptor(st)
	if err != nil {
		return Known{}, err
	}
	d, err := s.Verify(sess.Peer, time.Now())
	if err != nil {
		return Known{}, err
	}
	return Known{Desc: d, Signed: s}, nil
}
