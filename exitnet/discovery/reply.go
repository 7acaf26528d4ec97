package discovery

import (
	"errors"
	"io"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

const (
	// Lifetime is how long a descriptor an exit signs is valid: a client
	// that kept it can still start from it the next day.
	Lifetime = 24 * time.Hour
	// MaxKnown bounds the descriptors of other exits an exit keeps and
	// passes on, and what a client reads of them.
	MaxKnown = 64
)

// Known is a verified descriptor of an exit, with the bytes that were
// signed, so it can be kept and passed on.
type Known struct {
	Desc   Descriptor
	Signed SignedDescriptor
}

// ReadReply reads an exit's answer to a descriptor request, the bytes
// after the response header: its own descriptor, verified against
// want, then at most MaxKnown others, each verified on its own.
func ReadReply(r io.Reader, want link.PeerID, now time.Time) (own Descriptor, others []Known, dropped int, err error) {
	first, err := ReadSignedDescriptor(r)
	if err != nil {
		return Descriptor{}, nil, 0, err
	}
	if own, err = first.Verify(want, now); err != nil {
		return Descriptor{}, nil, 0, err
	}
	for range MaxKnown {
		s, err := ReadSignedDescriptor(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			dropped++
			break // the stream is out of step: stop reading it
		}
		d, err := s.Verify(link.PeerID{}, now)
		if err != nil || d.ID == want || len(d.Addrs) == 0 {
			dropped++
			continue
		}
		others = append(others, Known{Desc: d, Signed: s})
	}
	return own, others, dropped, nil
}
