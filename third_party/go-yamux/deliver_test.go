package yamux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// deliverPair is a client and a server session over TCP on loopback.
func deliverPair(t *testing.T) (client, server *Session) {
	t.Helper()
	c1, c2 := testTCPConn(t)
	client, err := Client(c1, DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err = Server(c2, DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// deliverData is n bytes that differ from one offset to the next.
func deliverData(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// writeChunks writes data in pieces of random sizes up to 100 kB, then
// closes the stream.
func writeChunks(st *Stream, data []byte, seed int64) error {
	rng := rand.New(rand.NewSource(seed))
	for len(data) > 0 {
		n := 1 + rng.Intn(100_000)
		if n > len(data) {
			n = len(data)
		}
		if _, err := st.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return st.Close()
}

// A stream's data handed over by the receive loop: every byte, in order,
// and far more than the initial window, so the window updates the receive
// loop sends must reach the writer. Read waits for the end and returns
// io.EOF.
func TestDeliverKeepsEveryByte(t *testing.T) {
	client, server := deliverPair(t)
	data := deliverData(8<<20, 1)
	errs := make(chan error, 1)
	go func() {
		st, err := client.OpenStream(context.Background())
		if err != nil {
			errs <- err
			return
		}
		errs <- writeChunks(st, data, 2)
	}()
	st, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	var calls int
	if !st.SetDeliver(func(p []byte) bool {
		got = append(got, p...)
		calls++
		return true
	}) {
		t.Fatal("SetDeliver reported a refusal; nothing was refused")
	}
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, st)
	if n != 0 || err != nil {
		t.Fatalf("Read after SetDeliver: %d bytes, err %v; want 0 bytes and io.EOF", n, err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("delivered %d bytes, want the %d written, in order", len(got), len(data))
	}
	if calls < 2 {
		t.Fatalf("delivered in %d calls: the receive loop did not deliver", calls)
	}
	if st.recvBuf.Len() != 0 {
		t.Fatalf("%d bytes left in the receive buffer", st.recvBuf.Len())
	}
}

// A deliver func that refuses now and then: the refused piece and what
// follows go to Read until Resume, and the two together are the stream's
// bytes, in order, each once.
func TestDeliverRefuseResume(t *testing.T) {
	client, server := deliverPair(t)
	data := deliverData(4<<20, 3)
	errs := make(chan error, 1)
	go func() {
		st, err := client.OpenStream(context.Background())
		if err != nil {
			errs <- err
			return
		}
		errs <- writeChunks(st, data, 4)
	}()
	st, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // the deliver func runs on the receive loop, Read here
	var got []byte
	var calls, refused, read int
	f := func(p []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls%5 == 0 {
			refused++
			return false
		}
		got = append(got, p...)
		return true
	}
	st.SetDeliver(f)
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 10_000)
	for {
		n, err := st.Read(buf) // returns data only after a refusal
		mu.Lock()
		got = append(got, buf[:n]...)
		mu.Unlock()
		read += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 && st.recvBuf.Len() == 0 {
			st.Resume()
		}
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, want the %d written, in order", len(got), len(data))
	}
	if refused == 0 || read == 0 {
		t.Fatalf("%d refusals, %d bytes read: the paused path was not taken", refused, read)
	}
}

// Data that arrived before SetDeliver is delivered first, in order; a
// refusal of it is reported, and the rest stays for Read.
func TestDeliverBufferedFirst(t *testing.T) {
	client, server := deliverPair(t)
	cst, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cst.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	st, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); st.recvBuf.Len() < 6; {
		if time.Now().After(deadline) {
			t.Fatal("the first bytes did not arrive")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := cst.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); st.recvBuf.Len() < 10; {
		if time.Now().After(deadline) {
			t.Fatal("the second write did not arrive")
		}
		time.Sleep(time.Millisecond)
	}

	// Refuse the second piece: the first is delivered, the second kept.
	var got []string
	ok := st.SetDeliver(func(p []byte) bool {
		if len(got) == 1 {
			return false
		}
		got = append(got, string(p))
		return true
	})
	if ok || len(got) != 1 || got[0] != "before" {
		t.Fatalf("SetDeliver = %v, delivered %q; want false and [before]", ok, got)
	}
	buf := make([]byte, 100)
	n, err := st.Read(buf)
	if err != nil || string(buf[:n]) != "more" {
		t.Fatalf("Read = %q, %v; want the refused piece", buf[:n], err)
	}
}

// A stream closed for reading while delivering gets nothing more, and its
// window still opens: the writer is not held up. CloseRead comes while
// the func is handling a piece (the receive loop may be in it at any
// time): that call ends as it would, and no other follows. (Checked
// under a lock the func also takes, a call under way would be counted
// after CloseRead now and then.)
func TestDeliverAfterCloseRead(t *testing.T) {
	client, server := deliverPair(t)
	data := deliverData(2<<20, 5)
	errs := make(chan error, 1)
	start := make(chan struct{}) // all data comes after SetDeliver, to the receive loop
	go func() {
		st, err := client.OpenStream(context.Background())
		if err != nil {
			errs <- err
			return
		}
		<-start
		st.SetWriteDeadline(time.Now().Add(30 * time.Second))
		errs <- writeChunks(st, data, 6)
	}()
	st, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	inCall, goOn := make(chan struct{}), make(chan struct{})
	var calls, after atomic.Int32
	var closed atomic.Bool
	st.SetDeliver(func(p []byte) bool {
		if calls.Add(1) == 1 {
			close(inCall)
			<-goOn
			return true
		}
		if closed.Load() {
			after.Add(1)
		}
		return true
	})
	close(start)
	<-inCall
	st.CloseRead()
	closed.Store(true)
	close(goOn)
	if err := <-errs; err != nil && !errors.Is(err, ErrStreamReset) {
		t.Fatal(err)
	}
	if n := after.Load(); n != 0 {
		t.Fatalf("%d calls after CloseRead, want none", n)
	}
}

// A FIN on a data frame (as some yamux implementations send the last
// data) ends the stream after that data: the deliver func has it while
// the stream is still open for reading, or Read has it before io.EOF.
// Processed before the data, the FIN let Read return io.EOF, and the
// reader end its stream, before the data was handed over.
func TestDeliverDataWithFIN(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		c1, c2 := testTCPConn(t)
		server, err := Server(c2, DefaultConfig(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { server.Close(); c1.Close() })
		go io.Copy(io.Discard, c1) // the server's ACK and window updates
		// The peer's side, written by hand: a SYN, then data with FIN.
		syn := encode(typeWindowUpdate, flagSYN, 1, 0)
		if _, err := c1.Write(syn[:]); err != nil {
			t.Fatal(err)
		}
		st, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var got []byte
		var calls int
		closedAtDelivery := false
		st.SetDeliver(func(p []byte) bool {
			st.stateLock.Lock()
			closed := st.readState != halfOpen
			st.stateLock.Unlock()
			mu.Lock()
			defer mu.Unlock()
			calls++
			closedAtDelivery = closedAtDelivery || closed
			if refuse {
				return false
			}
			got = append(got, p...)
			return true
		})
		data := []byte("the last words")
		hdr := encode(typeData, flagFIN, 1, uint32(len(data)))
		if _, err := c1.Write(append(hdr[:], data...)); err != nil {
			t.Fatal(err)
		}
		st.SetReadDeadline(time.Now().Add(10 * time.Second))
		read, err := io.ReadAll(st)
		if err != nil {
			t.Fatalf("refuse %v: Read: %v, want io.EOF at the end", refuse, err)
		}
		mu.Lock()
		got = append(got, read...)
		if calls != 1 || closedAtDelivery || string(got) != string(data) {
			t.Errorf("refuse %v: %d calls, closed for reading at delivery %v, got %q by io.EOF; want 1, false, %q",
				refuse, calls, closedAtDelivery, got, data)
		}
		mu.Unlock()
	}
}

// The peer's send window and our receive window agree once all is sent
// and every window update has arrived, however often the window grew
// on the way (the RTT is taken as an hour, so that it doubles at each
// update up to the maximum), for data read and for data delivered. When
// the window grew, the update carried only the growth, not what was due
// before it: the peer's window fell behind ours by half the maximum or
// more, for good, and a reader that read a full window at once could
// leave the writer stalled.
func TestWindowAgreesAfterGrowth(t *testing.T) {
	for _, deliver := range []bool{false, true} {
		client, server := deliverPair(t)
		atomic.StoreInt64(&server.rtt, int64(time.Hour))
		cst, err := client.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cst.Write([]byte{0}); err != nil {
			t.Fatal(err)
		}
		st, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		data := deliverData(48<<20, 7)
		var got atomic.Int64
		readDone := make(chan struct{})
		if deliver {
			st.SetDeliver(func(p []byte) bool { got.Add(int64(len(p))); return true })
			close(readDone)
		} else {
			go func() {
				defer close(readDone)
				buf := make([]byte, 1<<20)
				for {
					n, err := st.Read(buf)
					got.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
		cst.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := cst.Write(data); err != nil {
			t.Fatalf("deliver %v: Write: %v", deliver, err)
		}
		var peer, ours uint32
		for deadline := time.Now().Add(10 * time.Second); ; {
			peer = atomic.LoadUint32(&cst.sendWindow)
			st.recvBuf.bm.Lock()
			ours = st.recvBuf.cap
			st.recvBuf.bm.Unlock()
			if got.Load() == int64(len(data))+1 && peer == ours {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("deliver %v: %d of %d bytes taken; the peer's send window %d, our receive window %d: they differ",
					deliver, got.Load(), len(data)+1, peer, ours)
			}
			time.Sleep(time.Millisecond)
		}
		// Once the reader is done, or under deliverMu, recvWindow is ours.
		cst.Close()
		<-readDone
		st.deliverMu.Lock()
		grown := st.recvWindow
		st.deliverMu.Unlock()
		if grown != server.config.MaxStreamWindowSize {
			t.Fatalf("deliver %v: receive window %d, want it grown to the maximum, %d", deliver, grown, server.config.MaxStreamWindowSize)
		}
	}
}
