package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// arrival is bytes read from a delay line's output, and when.
type arrival struct {
	at   time.Duration
	data []byte
}

// readAll reads r to its end, noting when each read returned.
func readAll(r io.Reader, start time.Time) (got []arrival, end time.Duration) {
	for {
		buf := make([]byte, 64<<10)
		n, err := r.Read(buf)
		if n > 0 {
			got = append(got, arrival{time.Since(start), buf[:n]})
		}
		if err != nil {
			return got, time.Since(start)
		}
	}
}

// TestDelayLine checks, in fake time, that every byte comes out intact and
// in order exactly one delay after it went in, that a burst is not
// serialised (the line keeps its bandwidth), and that the end of the stream
// is delayed like the bytes.
func TestDelayLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 25 * time.Millisecond
		in, src := net.Pipe()
		dst, out := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- delayCopy(dst, src, delay, 0) }()
		start := time.Now()
		type result struct {
			got []arrival
			end time.Duration
		}
		results := make(chan result, 1)
		go func() {
			got, end := readAll(out, start)
			results <- result{got, end}
		}()

		var want bytes.Buffer
		for i := range 100 { // a burst at t=0
			chunk := bytes.Repeat([]byte{byte(i)}, 1000+i)
			in.Write(chunk)
			want.Write(chunk)
		}
		burst := want.Len()
		time.Sleep(10 * time.Millisecond) // fake time
		last := []byte("the last chunk, at 10ms")
		in.Write(last)
		want.Write(last)
		time.Sleep(30 * time.Millisecond)
		in.Close() // at 40ms

		r := <-results
		if err := <-done; err != nil {
			t.Fatalf("delayCopy: %v", err)
		}
		var got bytes.Buffer
		for _, a := range r.got {
			wantAt := delay
			if got.Len() >= burst {
				wantAt = 10*time.Millisecond + delay
			}
			if a.at != wantAt {
				t.Errorf("bytes %d to %d arrived at %v, want %v", got.Len(), got.Len()+len(a.data), a.at, wantAt)
			}
			got.Write(a.data)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("got %d bytes, want %d, identical and in order", got.Len(), want.Len())
		}
		if want := 40*time.Millisecond + delay; r.end != want {
			t.Errorf("end of stream at %v, want %v", r.end, want)
		}
	})
}

// TestDelayLineQueueBound checks that the line holds at most maxQueued
// bytes: a burst bigger than that drains one batch per delay.
func TestDelayLineQueueBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 25 * time.Millisecond
		in, src := net.Pipe()
		dst, out := net.Pipe()
		go delayCopy(dst, src, delay, 10_000)
		start := time.Now()
		go func() {
			for range 100 {
				in.Write(make([]byte, 1000))
			}
			in.Close()
		}()
		got, end := readAll(out, start)
		n := 0
		for _, a := range got {
			n += len(a.data)
		}
		if n != 100_000 {
			t.Fatalf("got %d bytes, want 100000", n)
		}
		// Ten batches of 10 chunks, one per delay. The end of the stream is
		// read, like a chunk, only once the last batch has left.
		if want := 10 * delay; got[len(got)-1].at != want || end != want+delay {
			t.Errorf("last bytes at %v and end at %v, want %v and %v", got[len(got)-1].at, end, want, want+delay)
		}
	})
}

// TestLinkDelayRelay runs the relay over loopback TCP: a round trip takes
// at least the RTT added, and bytes in both directions arrive intact with
// half-close carried.
func TestLinkDelayRelay(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const rtt = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- (&LinkDelay{Upstream: echo.Addr().String(), RTT: rtt}).Serve(ctx, ln) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t0 := time.Now()
	c.Write([]byte{1})
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < rtt {
		t.Errorf("a round trip took %v, less than the %v added", d, rtt)
	}

	want := make([]byte, 4<<20)
	rand.Read(want)
	go func() {
		c.Write(want)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("echo through the relay: %d bytes (%v), want %d identical", len(got), err, len(want))
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
