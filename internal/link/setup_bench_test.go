package link

import (
	"net"
	"testing"
)

// BenchmarkLinkSetup measures a whole link set-up over loopback TCP:
// connect, handshake, authentication both ways, and the first stream's
// first byte back, so the figure includes every round trip a client waits
// for before its first flow moves.
func BenchmarkLinkSetup(b *testing.B) {
	clientID, exitID := mustIdentity(b), mustIdentity(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				s, err := Server(b.Context(), c, Config{Identity: exitID}, nil)
				if err != nil {
					return
				}
				defer s.Close()
				st, err := s.AcceptStream()
				if err != nil {
					return
				}
				st.Write([]byte{1})
				<-s.CloseChan() // the client closes the link
			}()
		}
	}()
	exit := ExitAddr{ID: exitID.ID(), Addr: ln.Addr().String()}
	b.ReportAllocs()
	for b.Loop() {
		s, err := Dial(b.Context(), Config{Identity: clientID}, exit)
		if err != nil {
			b.Fatal(err)
		}
		st, err := s.OpenStream(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Read(make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
