package link

import (
	"errors"
	"testing"
)

// TestUnpinnedClientLearnsPeer: a dialer that knows only an address learns
// the exit's peer ID from the handshake, while a zero pin is a pin like any
// other and refuses every exit.
func TestUnpinnedClientLearnsPeer(t *testing.T) {
	for _, transport := range []string{"pipe", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			clientID, exitID := mustIdentity(t), mustIdentity(t)
			a, b := pair(t, transport)
			ch := make(chan handshakeResult, 1)
			go func() {
				s, err := Server(t.Context(), b, Config{Identity: exitID}, nil)
				ch <- handshakeResult{s, err}
			}()
			s, err := ClientUnpinned(t.Context(), a, Config{Identity: clientID})
			srv := <-ch
			if err != nil || srv.err != nil {
				t.Fatalf("handshake: client %v, server %v", err, srv.err)
			}
			t.Cleanup(func() { s.Close(); srv.s.Close() })
			if s.Peer != exitID.ID() {
				t.Fatalf("unpinned client sees %s, want %s", s.Peer.Short(), exitID.ID().Short())
			}

			cli, _ := handshake(t, transport, clientID, exitID, PeerID{}, nil)
			if !errors.Is(cli.err, ErrPeerMismatch) {
				t.Fatalf("zero pin: %v, want ErrPeerMismatch", cli.err)
			}
		})
	}
}
