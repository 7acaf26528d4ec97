package yamux

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"sync"
	"testing"
	"time"
)

// patternByte is byte off of stream n's data in TestDirectWritesKeepOrder.
func patternByte(n, off int) byte { return byte(n*131 + off*7 + off>>11) }

// Streams writing their own frames and frames queued for the send loop
// (streams with a write deadline, window updates, pings) mix on one
// connection: every stream's bytes must arrive whole and in order.
func TestDirectWritesKeepOrder(t *testing.T) {
	c1, c2 := testTCPConn(t)
	conf := DefaultConfig()
	conf.KeepAliveInterval = 10 * time.Millisecond
	client, err := Client(c1, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := Server(c2, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	const streams, writes = 16, 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*streams)
	for n := range streams {
		st, err := client.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer st.Close()
			if n%2 == 1 { // the send loop writes this stream's frames
				st.SetWriteDeadline(time.Now().Add(time.Minute))
			}
			rng := rand.New(rand.NewSource(int64(n)))
			off := 0
			for range writes {
				b := make([]byte, 1+rng.Intn(100_000))
				for i := range b {
					b[i] = patternByte(n, off+i)
				}
				if _, err := st.Write(b); err != nil {
					errs <- fmt.Errorf("stream %d write: %w", n, err)
					return
				}
				off += len(b)
			}
		}()
	}
	for range streams {
		st, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := int(st.StreamID()-1) / 2 // client streams are 1, 3, 5…
			data, err := io.ReadAll(st)
			if err != nil {
				errs <- fmt.Errorf("stream %d read: %w", n, err)
				return
			}
			for i, c := range data {
				if c != patternByte(n, i) {
					errs <- fmt.Errorf("stream %d: byte %d is %d, want %d", n, i, c, patternByte(n, i))
					return
				}
			}
			// Every byte written, none after the FIN: the stream's
			// Close comes after its last frame.
			rng := rand.New(rand.NewSource(int64(n)))
			want := 0
			for range writes {
				want += 1 + rng.Intn(100_000)
			}
			if len(data) != want {
				errs <- fmt.Errorf("stream %d: %d bytes, want %d", n, len(data), want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := client.directFrames.Load(); d == 0 {
		t.Error("no frame was written by its stream: the test did not mix the two paths")
	}
}
