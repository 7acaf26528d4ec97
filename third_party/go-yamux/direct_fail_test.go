package yamux

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// stallConn is a connection whose writes can be made to stall, to fail
// half way, and whose Close can be held up, to reach the states a direct
// write can meet on a real link.
type stallConn struct {
	net.Conn

	mu        sync.Mutex
	deadline  time.Time     // the write deadline, honoured while stalled
	gate      chan struct{} // non-nil: writes wait for it to close
	failNext  bool          // the next write sends half and times out
	failed    bool          // a write has failed
	closeGate chan struct{} // non-nil: Close waits for it to close

	entered   chan struct{} // a write has started to wait at the gate
	afterFail chan struct{} // a write reached the wire after a failed one
	closing   chan struct{} // Close has been called
	closed    chan struct{}
	closeOnce sync.Once
}

func newStallConn(c net.Conn) *stallConn {
	return &stallConn{
		Conn:      c,
		entered:   make(chan struct{}, 1),
		afterFail: make(chan struct{}, 1),
		closing:   make(chan struct{}, 1),
		closed:    make(chan struct{}),
	}
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

// stall makes writes wait until release, their deadline or Close.
func (c *stallConn) stall() {
	c.mu.Lock()
	c.gate = make(chan struct{})
	c.mu.Unlock()
}

func (c *stallConn) release() {
	c.mu.Lock()
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
	c.mu.Unlock()
}

func (c *stallConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	gate, dl, fail, failed := c.gate, c.deadline, c.failNext, c.failed
	c.failNext = false
	if fail {
		c.failed = true
	}
	c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if failed {
		select {
		case c.afterFail <- struct{}{}:
		default:
		}
	}
	if fail {
		n, _ := c.Conn.Write(p[:len(p)/2])
		return n, os.ErrDeadlineExceeded
	}
	if gate != nil {
		select {
		case c.entered <- struct{}{}:
		default:
		}
		var timeout <-chan time.Time
		if !dl.IsZero() {
			t := time.NewTimer(time.Until(dl))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-gate:
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	return c.Conn.Write(p)
}

func (c *stallConn) Close() error {
	select {
	case c.closing <- struct{}{}:
	default:
	}
	c.mu.Lock()
	cg := c.closeGate
	c.mu.Unlock()
	if cg != nil {
		<-cg
	}
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// stallPair is a client session over a stallConn and a server session,
// with one stream open and established, and nothing in flight.
func stallPair(t *testing.T, conf *Config) (*stallConn, *Session, *Session, *Stream, *Stream) {
	t.Helper()
	c1, c2 := testTCPConn(t)
	sc := newStallConn(c1)
	client, err := Client(sc, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := Server(c2, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	cst, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cst.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	sst, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(sst, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	settle(t, client, server)
	return sc, client, server, cst, sst
}

// openSettled opens a stream from client, has server accept it (its SYN
// is written), and settles.
func openSettled(t *testing.T, client, server *Session) (*Stream, *Stream) {
	t.Helper()
	st, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sst, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	settle(t, client, server)
	return st, sst
}

// settle returns once both sessions' first RTT measurements are done (no
// other ping is sent: quietConf) and client's send loop has finished
// writing its answer: nothing is queued or being written, so that the
// client's next data frame is written by its stream.
func settle(t *testing.T, client, server *Session) {
	t.Helper()
	for i := 0; client.RTT() == 0 || server.RTT() == 0; i++ {
		if i == 1000 {
			t.Fatal("no RTT measured")
		}
		if _, err := client.Ping(); err != nil {
			t.Fatal(err)
		}
		if _, err := server.Ping(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := server.Ping(); err != nil {
		t.Fatal(err)
	}
	client.writeMu.Lock() // the send loop is done with the pong
	client.writeMu.Unlock()
	if q := client.queued.Load(); q != 0 {
		t.Fatalf("%d frames queued", q)
	}
}

func quietConf() *Config {
	conf := testConfNoKeepAlive()
	conf.MeasureRTTInterval = time.Hour
	conf.LogOutput = io.Discard
	return conf
}

// A stream writing its own frame when the session is closed under it
// reports the session's error, as upstream's queued frames do, never the
// connection's (net.ErrClosed reads as a clean end to a relay).
func TestDirectWriteErrorIsSessions(t *testing.T) {
	sc, client, _, cst, _ := stallPair(t, quietConf())
	before := client.directFrames.Load()
	sc.stall()
	errc := make(chan error, 1)
	go func() {
		_, err := cst.Write([]byte("x"))
		errc <- err
	}()
	<-sc.entered
	if client.directFrames.Load() != before {
		t.Fatal("frame counted before it was written")
	}
	client.Close()
	err := <-errc
	if client.directFrames.Load() != before+1 {
		t.Fatal("the frame did not go the direct way")
	}
	if errors.Is(err, net.ErrClosed) {
		t.Fatalf("write error %v is the connection's", err)
	}
	if !errors.Is(err, ErrSessionShutdown) {
		t.Fatalf("write error %v, want the session's (%v)", err, ErrSessionShutdown)
	}
}

// After a write to the connection failed, perhaps half way through a
// frame, nothing more is written to it: neither by a stream writing its
// own frame nor by the send loop, while the session is still ending.
func TestNothingWrittenAfterFailedWrite(t *testing.T) {
	sc, client, server, cst, _ := stallPair(t, quietConf())
	queuedSt, _ := openSettled(t, client, server)
	directSt, _ := openSettled(t, client, server)
	closeGate := make(chan struct{})
	sc.mu.Lock()
	sc.failNext = true
	sc.closeGate = closeGate
	sc.mu.Unlock()

	var wg sync.WaitGroup
	defer wg.Wait()
	letClose := sync.OnceFunc(func() { close(closeGate) })
	defer letClose()
	errc := make(chan error, 2)
	failc := make(chan error, 1)
	wg.Add(3)
	go func() {
		defer wg.Done()
		_, err := cst.Write(make([]byte, 1000))
		failc <- err
	}()
	<-sc.closing // the session is ending, and its connection still open
	go func() {
		defer wg.Done()
		_, err := directSt.Write([]byte("after"))
		errc <- err
	}()
	go func() {
		defer wg.Done()
		queuedSt.SetWriteDeadline(time.Now().Add(time.Minute))
		_, err := queuedSt.Write([]byte("after"))
		errc <- err
	}()
	select {
	case <-sc.afterFail:
		t.Fatal("a frame was written after a failed write")
	case <-client.sendDoneCh: // the send loop met the failure too
	case <-time.After(10 * time.Second):
		t.Fatal("the send loop neither wrote nor stopped")
	}
	select {
	case <-sc.afterFail:
		t.Fatal("a frame was written after a failed write")
	default:
	}
	letClose()
	if err := <-failc; !errors.Is(err, ErrConnectionWriteTimeout) {
		t.Errorf("failed write returned %v, want %v", err, ErrConnectionWriteTimeout)
	}
	// The other two may have been queued (which is a success, as
	// upstream) or refused; either way they must return.
	<-errc
	<-errc
	if !errors.Is(client.shutdownErr, ErrConnectionWriteTimeout) {
		t.Errorf("session ended with %v, want %v", client.shutdownErr, ErrConnectionWriteTimeout)
	}
}

// A stream blocked writing its own frame into a stalled connection is
// stopped by the connection write timeout, which ends the session.
func TestDirectWriteStalledTimesOut(t *testing.T) {
	conf := quietConf()
	conf.ConnectionWriteTimeout = 300 * time.Millisecond
	sc, client, _, cst, _ := stallPair(t, conf)
	before := client.directFrames.Load()
	sc.stall()
	start := time.Now()
	_, err := cst.Write([]byte("x"))
	took := time.Since(start)
	if client.directFrames.Load() != before+1 {
		t.Fatal("the frame did not go the direct way")
	}
	if !errors.Is(err, ErrConnectionWriteTimeout) {
		t.Fatalf("write error %v, want %v", err, ErrConnectionWriteTimeout)
	}
	if took > conf.ConnectionWriteTimeout+2*time.Second {
		t.Fatalf("write took %v, write timeout %v", took, conf.ConnectionWriteTimeout)
	}
	select {
	case <-client.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("session still open after a write timed out")
	}
}

// CloseWithError while a stream writes its own frame into a stalled
// connection waits for that write at most the write timeout, then tries
// its GoAway for goAwayWaitTime; Close does not wait.
func TestCloseWhileDirectWriteStalled(t *testing.T) {
	for _, goAway := range []bool{false, true} {
		t.Run(map[bool]string{false: "Close", true: "CloseWithError"}[goAway], func(t *testing.T) {
			conf := quietConf()
			conf.ConnectionWriteTimeout = 500 * time.Millisecond
			sc, client, _, cst, _ := stallPair(t, conf)
			sc.stall()
			errc := make(chan error, 1)
			go func() {
				_, err := cst.Write([]byte("x"))
				errc <- err
			}()
			<-sc.entered
			start := time.Now()
			limit := time.Second
			if goAway {
				client.CloseWithError(42)
				limit += conf.ConnectionWriteTimeout + goAwayWaitTime
			} else {
				client.Close()
			}
			if took := time.Since(start); took > limit {
				t.Fatalf("close took %v, want at most %v", took, limit)
			}
			select {
			case err := <-errc:
				if err == nil {
					t.Fatal("write succeeded on a closed session")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("write still blocked after close")
			}
		})
	}
}

// Frames given up at their stream's deadline, while the send loop was
// stuck in a write, leave the count of queued frames as it was: once the
// queue has drained it is zero, and streams write their own frames again.
func TestQueuedCountAfterDeadlines(t *testing.T) {
	conf := quietConf()
	conf.ConnectionWriteTimeout = time.Minute
	sc, client, server, cst, sst := stallPair(t, conf)
	st, sst3 := openSettled(t, client, server)
	sc.stall()
	st.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	written, timeouts := 0, 0
	for range 200 {
		n, err := st.Write([]byte("q"))
		written += n
		if errors.Is(err, ErrTimeout) {
			timeouts++
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if timeouts == 0 {
		t.Fatal("no write timed out: the queue never filled")
	}
	if q := client.queued.Load(); q != int64(written) {
		t.Fatalf("queued %d, want %d (the frames written)", q, written)
	}
	sc.release()
	if _, err := io.ReadFull(sst3, make([]byte, written)); err != nil {
		t.Fatal(err)
	}
	// The send loop has written the last queued frame; a ping it
	// writes after that frame's loop has counted it off.
	if _, err := client.Ping(); err != nil {
		t.Fatal(err)
	}
	if q := client.queued.Load(); q != 0 {
		t.Fatalf("queued %d after the queue drained", q)
	}
	client.writeMu.Lock() // the send loop is done with the ping
	client.writeMu.Unlock()
	before := client.directFrames.Load()
	if _, err := cst.Write([]byte("direct")); err != nil {
		t.Fatal(err)
	}
	if client.directFrames.Load() != before+1 {
		t.Fatal("a stream did not write its own frame after the queue drained")
	}
	if _, err := io.ReadFull(sst, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
}

// Streams writing their own frames back to back do not hold the send
// loop's pings off the connection: each ping is answered well within the
// write timeout that would otherwise end the session.
func TestPingNotStarvedByDirectWriters(t *testing.T) {
	c1, c2 := testTCPConn(t)
	conf := quietConf()
	conf.ConnectionWriteTimeout = 5 * time.Second
	client, err := Client(c1, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := Server(c2, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })

	const writers = 8
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range writers {
		st, err := client.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer st.Close()
			b := make([]byte, 16<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := st.Write(b); err != nil {
					return
				}
			}
		}()
	}
	for range writers {
		st, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(io.Discard, st)
		}()
	}
	before := client.directFrames.Load()
	for range 20 {
		start := time.Now()
		if _, err := client.Ping(); err != nil {
			t.Errorf("ping: %v", err)
			break
		}
		if took := time.Since(start); took > conf.ConnectionWriteTimeout/2 {
			t.Errorf("ping took %v", took)
		}
	}
	close(stop)
	wg.Wait()
	if client.directFrames.Load() == before {
		t.Error("no stream wrote its own frame during the pings")
	}
}

// A stream with a write deadline is held to it while another stream's own
// write waits on a stalled connection: its frames queue, and when the
// queue is full its Write returns at the deadline, long before the
// connection write timeout.
func TestStreamDeadlineBehindStalledDirectWrite(t *testing.T) {
	conf := quietConf()
	conf.ConnectionWriteTimeout = time.Minute
	sc, client, server, cst, _ := stallPair(t, conf)
	st, _ := openSettled(t, client, server)
	sc.stall()
	defer sc.release()
	errc := make(chan error, 1)
	go func() {
		_, err := cst.Write([]byte("stuck"))
		errc <- err
	}()
	<-sc.entered
	const wait = 200 * time.Millisecond
	st.SetWriteDeadline(time.Now().Add(wait))
	start := time.Now()
	var werr error
	for range 200 {
		if _, werr = st.Write([]byte("q")); werr != nil {
			break
		}
	}
	if took := time.Since(start); !errors.Is(werr, ErrTimeout) || took > wait+2*time.Second {
		t.Fatalf("write returned %v after %v, want %v after %v", werr, took, ErrTimeout, wait)
	}
	sc.release()
	if err := <-errc; err != nil {
		t.Fatalf("stalled write, once released: %v", err)
	}
}
