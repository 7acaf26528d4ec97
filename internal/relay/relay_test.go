package relay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// streamPair returns both ends of a yamux stream over loopback TCP.
func streamPair(t *testing.T) (*yamux.Stream, *yamux.Stream) {
	t.Helper()
	a, b := tcpPair(t)
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cs, err := yamux.Client(a, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := yamux.Server(b, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close(); ss.Close() })
	st, err := cs.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte{0}) // let the other side accept it
	peer, err := ss.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(peer, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return st, peer
}

// The app ↔ [a Splice b] ↔ far layout of a relay hop.
type hop struct {
	app, far net.Conn
	done     chan Result
}

func startHop(t *testing.T, app, a, b, far net.Conn) *hop {
	h := &hop{app: app, far: far, done: make(chan Result, 1)}
	go func() { h.done <- Splice(a, b) }()
	return h
}

func (h *hop) wait(t *testing.T) Result {
	t.Helper()
	select {
	case r := <-h.done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Splice did not return")
		return Result{}
	}
}

func TestSpliceCarriesBytesAndHalfClose(t *testing.T) {
	app, a := tcpPair(t)
	b, far := streamPair(t)
	h := startHop(t, app, a, b, far)

	up := make([]byte, 1<<20)
	rand.Read(up)
	got := make(chan []byte, 1)
	go func() {
		d, _ := io.ReadAll(far)
		got <- d
	}()
	if _, err := app.Write(up); err != nil {
		t.Fatal(err)
	}
	app.CloseWrite()
	if d := <-got; !bytes.Equal(d, up) {
		t.Fatalf("far end got %d bytes, want %d identical", len(d), len(up))
	}
	// The flow is half-open: the far end still answers after the app's EOF.
	if _, err := far.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	far.Close()
	back, err := io.ReadAll(app)
	if err != nil || string(back) != "answer" {
		t.Fatalf("app got %q, %v", back, err)
	}
	r := h.wait(t)
	if r.Err != nil || r.AtoB != int64(len(up)) || r.BtoA != 6 {
		t.Fatalf("result %+v", r)
	}
}

// An app that aborts its connection (a reset, bytes unread) aborts the flow
// at the far end too: the stream is reset, not ended as if complete.
func TestSpliceAbortResetsStream(t *testing.T) {
	app, a := tcpPair(t)
	b, far := streamPair(t)
	h := startHop(t, app, a, b, far)

	if _, err := far.Write(make([]byte, 4096)); err != nil { // unread by the app
		t.Fatal(err)
	}
	app.SetLinger(0)
	app.Close()

	far.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, far)
	if !errors.Is(err, yamux.ErrStreamReset) {
		t.Fatalf("far end read error %v, want a stream reset", err)
	}
	if r := h.wait(t); r.Err == nil {
		t.Fatalf("result %+v, want an error", r)
	}
}

// A stream reset by the far end reaches the app as a TCP reset, not as a
// clean end of stream that would make a truncated transfer look complete.
func TestSpliceStreamResetResetsApp(t *testing.T) {
	app, a := tcpPair(t)
	b, far := streamPair(t)
	h := startHop(t, app, a, b, far)

	if _, err := far.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 7)
	if _, err := io.ReadFull(app, got); err != nil || string(got) != "partial" {
		t.Fatalf("app got %q, %v", got, err)
	}
	far.Reset()

	app.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, app)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("app read error %v, want a connection reset", err)
	}
	h.wait(t)
}

// Writes of every size, so that each direction moves between its quiet
// buffer and the large one many times: every byte arrives, in order.
func TestSpliceMixedSizes(t *testing.T) {
	app, a := tcpPair(t)
	b, far := streamPair(t)
	h := startHop(t, app, a, b, far)

	var want bytes.Buffer
	sizes := []int{1, quietSize - 1, quietSize, quietSize + 1, 7, bufSize, 3 * bufSize, 100, 2 * quietSize}
	got := make(chan []byte, 1)
	go func() {
		d, _ := io.ReadAll(far)
		got <- d
	}()
	for round := range 20 {
		for _, n := range sizes {
			p := make([]byte, n+round)
			rand.Read(p)
			want.Write(p)
			if _, err := app.Write(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	app.CloseWrite()
	if d := <-got; !bytes.Equal(d, want.Bytes()) {
		t.Fatalf("far end got %d bytes, want %d identical", len(d), want.Len())
	}
	far.Close()
	if r := h.wait(t); r.Err != nil || r.AtoB != int64(want.Len()) {
		t.Fatalf("result %+v", r)
	}
}

// SpliceCounting's totals move while the flow is open, not only when it
// ends.
func TestSpliceCountsWhileOpen(t *testing.T) {
	app, a := tcpPair(t)
	b, far := streamPair(t)
	var up, down atomic.Uint64
	done := make(chan Result, 1)
	go func() { done <- SpliceCounting(a, b, &up, &down) }()

	if _, err := app.Write(make([]byte, 100000)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(far, make([]byte, 100000)); err != nil {
		t.Fatal(err)
	}
	if _, err := far.Write(make([]byte, 777)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(app, make([]byte, 777)); err != nil {
		t.Fatal(err)
	}
	// The relay counts a write once it has returned, which may be just
	// after the reader has the bytes.
	deadline := time.Now().Add(10 * time.Second)
	for up.Load() != 100000 || down.Load() != 777 {
		if time.Now().After(deadline) {
			t.Fatalf("while open: counted %d up, %d down; want 100000 and 777", up.Load(), down.Load())
		}
		time.Sleep(time.Millisecond) // polling counters, bounded by the deadline
	}
	app.Close()
	far.Close()
	if r := <-done; r.AtoB != 100000 || r.BtoA != 777 {
		t.Fatalf("result %+v", r)
	}
}

// lastGasp returns its bytes together with io.EOF, as a yamux stream does
// when its session dies under a read, and then the real error.
type lastGasp struct {
	net.Conn
	reads int
}

var errDied = errors.New("session died")

func (l *lastGasp) Read(p []byte) (int, error) {
	l.reads++
	if l.reads == 1 {
		return copy(p, "last bytes"), io.EOF
	}
	return 0, errDied
}

// Bytes that come with an EOF are not taken for the end of the stream:
// the next read decides, and here it says the flow was cut short.
func TestSpliceEOFWithBytesIsNotTheEnd(t *testing.T) {
	app, a := tcpPair(t)
	_, other := tcpPair(t)
	b := &lastGasp{Conn: other}
	h := startHop(t, app, a, b, nil)

	app.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(app)
	if string(got) != "last bytes" || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("app got %q, %v; want the last bytes, then a reset", got, err)
	}
	if r := h.wait(t); !errors.Is(r.Err, errDied) {
		t.Fatalf("result %+v, want the second read's error", r)
	}
}

// A direction holds the large buffer while bulk moves and gives it back
// after a small read, before waiting again.
func TestSpliceGivesBackLargeBuffer(t *testing.T) {
	app, a := tcpPair(t)
	b, far := streamPair(t)
	before := largeHeld.Load()
	h := startHop(t, app, a, b, far)

	go app.Write(make([]byte, 200<<10))
	if _, err := io.ReadFull(far, make([]byte, 200<<10)); err != nil {
		t.Fatal(err)
	}
	if n := largeHeld.Load() - before; n != 1 {
		t.Fatalf("%d large buffers held after bulk, want 1 (the direction that carried it)", n)
	}
	app.Write([]byte("have"))
	if _, err := io.ReadFull(far, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for largeHeld.Load() != before {
		if time.Now().After(deadline) {
			t.Fatalf("%d large buffers still held while the flow is quiet", largeHeld.Load()-before)
		}
		time.Sleep(time.Millisecond) // polling a counter, bounded by the deadline
	}
	app.Close()
	far.Close()
	h.wait(t)
}
