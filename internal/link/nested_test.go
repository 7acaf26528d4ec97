package link

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
)

// linkPair links a client over conn a to an exit over conn b.
func linkPair(t *testing.T, a, b net.Conn, nested bool) (cli, srv *Session) {
	t.Helper()
	clientID, exitID := mustIdentity(t), mustIdentity(t)
	ch := make(chan *Session, 1)
	go func() {
		s, err := Server(t.Context(), b, Config{Identity: exitID}, nil)
		if err != nil {
			t.Error(err)
		}
		ch <- s
	}()
	cli, err := Client(t.Context(), a, Config{Identity: clientID, Nested: nested}, exitID.ID())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	if srv = <-ch; srv == nil {
		t.FailNow()
	}
	t.Cleanup(func() { srv.Close() })
	return cli, srv
}

// streamPair opens a stream from cli and returns it with the accepted end.
func streamPair(t *testing.T, cli, srv *Session) (net.Conn, net.Conn) {
	t.Helper()
	st, err := cli.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Write([]byte{1}); err != nil { // open the stream
		t.Fatal(err)
	}
	in, err := srv.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	first := make([]byte, 1)
	if _, err := io.ReadFull(in, first); err != nil || first[0] != 1 {
		t.Fatalf("first byte %v: %v", first, err)
	}
	return st, in
}

// A link nested in a stream of another (two hops) cuts its frames so that
// each one, with its TLS records, fills one frame of the outer link: a
// write of the nested link's largest payload (what a flow reads at once,
// internal/relay) reaches the kernel under the outer link in one write;
// one byte more takes a second frame, and a second write.
func TestNestedFrameIsOneOuterWrite(t *testing.T) {
	a, b := pair(t, "tcp")
	counted := &countingConn{Conn: a}
	outerCli, outerSrv := linkPair(t, counted, b, false)
	carrier, carried := streamPair(t, outerCli, outerSrv)
	innerCli, innerSrv := linkPair(t, carrier, carried, true)
	inner, innerIn := streamPair(t, innerCli, innerSrv)
	// Each session pings once as it starts (yamux measures the round
	// trip); nested, a ping or its answer is a write of 68 bytes under
	// the outer link, which countingConn counts. Let those be over before
	// counting.
	for _, s := range []*Session{innerCli, innerSrv} {
		for i := 0; s.RTT() == 0; i++ {
			if i == 1000 {
				t.Fatal("a nested session has not measured its round trip after 1000 pings")
			}
			if _, err := s.Ping(); err != nil {
				t.Fatal(err)
			}
		}
	}

	largest := int(maxFrame(true)) - 12
	if largest != 64<<10-112 {
		t.Fatalf("a nested frame carries %d bytes, want 64 KiB − 112 (internal/relay's buffer)", largest)
	}
	for _, tc := range []struct {
		size, writes int
	}{
		{largest, 1},
		{largest + 1, 2},
		{1000, 1},
	} {
		payload := make([]byte, tc.size)
		rand.Read(payload)
		before := counted.writes.Load()
		if _, err := inner.Write(payload); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(payload))
		if _, err := io.ReadFull(innerIn, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("%d bytes corrupted on the way", tc.size)
		}
		if n := counted.writes.Load() - before; n != int64(tc.writes) {
			t.Errorf("a write of %d bytes into the nested link took %d writes into the kernel, want %d", tc.size, n, tc.writes)
		}
	}
}
