package link

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"
)

// TestDescriptorOnlyHandshake: a client that asks only for the exit's
// descriptor is judged by AdmitDescriptorOnly instead of allow, and the
// exit's session says what it asked; without AdmitDescriptorOnly, allow
// judges it as any client; an ordinary client is never judged by
// AdmitDescriptorOnly.
func TestDescriptorOnlyHandshake(t *testing.T) {
	none := func(PeerID) bool { return false }
	all := func(PeerID) bool { return true }
	for _, tt := range []struct {
		name        string
		descOnly    bool
		allow       func(PeerID) bool
		admitDesc   func(PeerID) bool
		wantAdmit   bool
		wantSession bool // Session.DescriptorOnly at the exit
	}{
		{"descriptor-only, admitted as such", true, none, all, true, true},
		{"descriptor-only, refused as such", true, all, none, false, false},
		{"descriptor-only, no separate rule", true, none, nil, false, false},
		{"descriptor-only, allowed", true, all, nil, true, true},
		{"ordinary, refused", false, none, all, false, false},
		{"ordinary, allowed", false, all, none, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clientID, exitID := mustIdentity(t), mustIdentity(t)
			a, b := pair(t, "pipe")
			ch := make(chan handshakeResult, 1)
			go func() {
				s, err := Server(t.Context(), b, Config{Identity: exitID, AdmitDescriptorOnly: tt.admitDesc}, tt.allow)
				ch <- handshakeResult{s, err}
			}()
			cs, cerr := Client(t.Context(), a, Config{Identity: clientID, DescriptorOnly: tt.descOnly}, exitID.ID())
			if cerr != nil {
				a.Close() // the exit's fallback waits for the client to go
			}
			srv := <-ch
			for _, s := range []*Session{cs, srv.s} {
				if s != nil {
					t.Cleanup(func() { s.Close() })
				}
			}
			if (cerr == nil) != tt.wantAdmit || (srv.err == nil) != tt.wantAdmit {
				t.Fatalf("client %v, exit %v; want admitted %v", cerr, srv.err, tt.wantAdmit)
			}
			if tt.wantAdmit && srv.s.DescriptorOnly != tt.wantSession {
				t.Fatalf("exit's session DescriptorOnly %v, want %v", srv.s.DescriptorOnly, tt.wantSession)
			}
		})
	}
}

// TestDescriptorOnlyOneStream: on a descriptor-only link the exit holds
// one stream, the request's: a client that opens more gets them reset at
// once, rather than held unaccepted, each with a window of buffered data,
// for as long as the link lasts.
func TestDescriptorOnlyOneStream(t *testing.T) {
	for _, transport := range []string{"pipe", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			clientID, exitID := mustIdentity(t), mustIdentity(t)
			a, b := pair(t, transport)
			ch := make(chan handshakeResult, 1)
			go func() {
				s, err := Server(t.Context(), b, Config{Identity: exitID, AdmitDescriptorOnly: func(PeerID) bool { return true }}, nil)
				ch <- handshakeResult{s, err}
			}()
			cs, err := Client(t.Context(), a, Config{Identity: clientID, DescriptorOnly: true}, exitID.ID())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cs.Close() })
			srv := <-ch
			if srv.err != nil {
				t.Fatal(srv.err)
			}
			t.Cleanup(func() { srv.s.Close() })

			first, err := cs.OpenStream(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := first.Write([]byte("a")); err != nil {
				t.Fatal(err)
			}
			accepted, err := srv.s.AcceptStream()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(accepted, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				more, err := cs.OpenStream(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				more.Write(bytes.Repeat([]byte("x"), 64<<10))
				more.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = more.Read(make([]byte, 1))
				if !errors.Is(err, yamux.ErrStreamReset) {
					t.Fatalf("stream %d after the request's: read %v, want it reset", i+2, err)
				}
			}
			// The request's stream still works.
			if _, err := accepted.Write([]byte("b")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(first, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
