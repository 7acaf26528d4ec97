package link

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// countingConn counts the writes that reach the connection under TLS,
// leaving out small ones: the link's pings and window updates come and go
// on their own schedule.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	if len(p) > 64 {
		c.writes.Add(1)
	}
	return c.Conn.Write(p)
}

// A full yamux frame is four TLS records; they must reach the kernel in
// one write, and arrive intact.
func TestFrameIsOneWrite(t *testing.T) {
	a, b := pair(t, "tcp")
	counted := &countingConn{Conn: a}
	clientID, exitID := mustIdentity(t), mustIdentity(t)
	ch := make(chan *Session, 1)
	go func() {
		s, err := Server(t.Context(), b, Config{Identity: exitID}, nil)
		if err != nil {
			t.Error(err)
		}
		ch <- s
	}()
	cli, err := Client(t.Context(), counted, Config{Identity: clientID}, exitID.ID())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	srv := <-ch
	if srv == nil {
		t.FailNow()
	}
	t.Cleanup(func() { srv.Close() })

	st, err := cli.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan io.Reader, 1)
	go func() {
		s, err := srv.AcceptStream()
		if err != nil {
			accepted <- bytes.NewReader(nil)
			return
		}
		accepted <- s
	}()
	if _, err := st.Write([]byte{1}); err != nil { // open the stream
		t.Fatal(err)
	}
	in := <-accepted
	first := make([]byte, 1)
	if _, err := io.ReadFull(in, first); err != nil || first[0] != 1 {
		t.Fatalf("first byte %v: %v", first, err)
	}

	// One frame: 64 KiB with its 12-byte header, four 16 KiB records.
	payload := make([]byte, 64<<10-12)
	rand.Read(payload)
	before := counted.writes.Load()
	if _, err := st.Write(payload); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(in, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload corrupted on the way")
	}
	if n := counted.writes.Load() - before; n != 1 {
		t.Fatalf("a 64 KiB frame took %d writes into the kernel, want 1", n)
	}
}

// Records written outside a frame, such as the handshake's, are never held
// back: the handshake completes although nothing frames its records.
func TestBatchPassesThroughOutsideFrames(t *testing.T) {
	a, b := pair(t, "pipe")
	bc := newBatched(a)
	go func() {
		buf := make([]byte, 5)
		io.ReadFull(b, buf)
		b.Write(buf)
	}()
	if _, err := bc.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(a, got); err != nil || string(got) != "hello" {
		t.Fatalf("echo %q: %v", got, err)
	}
	if len(bc.buf) != 0 {
		t.Fatalf("%d bytes left in the batch", len(bc.buf))
	}
}
