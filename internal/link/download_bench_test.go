package link

import (
	"io"
	"net"
	"testing"
)

// BenchmarkLinkDownload measures one stream's bulk transfer from the exit
// to the client over loopback TCP.
func BenchmarkLinkDownload(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	exitID, clientID := mustIdentity(b), mustIdentity(b)
	chunk := make([]byte, 64<<10)
	const total = 64 << 20
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		s, err := Server(b.Context(), conn, Config{Identity: exitID}, nil)
		if err != nil {
			return
		}
		defer s.Close()
		for {
			st, err := s.AcceptStream()
			if err != nil {
				return
			}
			for n := 0; n < total; n += len(chunk) {
				st.Write(chunk)
			}
			st.Close()
		}
	}()
	s, err := Dial(b.Context(), Config{Identity: clientID}, ExitAddr{ID: exitID.ID(), Addr: ln.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		st, err := s.OpenStream(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := io.Copy(io.Discard, st); n != total {
			b.Fatalf("got %d bytes", n)
		}
	}
}
