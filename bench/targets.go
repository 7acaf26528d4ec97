package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/swarmvpn/swarmvpn/internal/listener"
)

// What a flow asks of the TCP target, in its first byte.
const (
	opEcho     = 'E' // echo every byte until the flow half-closes
	opUpload   = 'U' // swallow bytes until the flow half-closes, then answer their count (8 bytes, big endian)
	opDownload = 'D' // read an 8-byte big-endian count, send that many bytes or until the flow half-closes, then close
)

// payloadSize is the block the target sends downloads from. Its bytes are
// random, so a proxy that compresses (ssh -C) gains nothing.
const payloadSize = 256 << 10

// maxFlowBytes bounds what one bulk flow sends or asks for, whatever the
// round's duration: the time limit ends a round, this is the backstop.
const maxFlowBytes = 64 << 30

// udpBufferSize is the socket buffer asked for UDP sockets: room for a
// window of 1,400-byte datagrams in flight.
const udpBufferSize = 4 << 20

// Targets are the servers every flow ends at: one TCP port that echoes,
// swallows or streams bytes as each flow's first byte asks, and a UDP echo
// on the same port number. One port (TCP and UDP) is all a firewall in
// front of them must open.
type Targets struct {
	// Addr is where flows are sent: the advertised host and the port.
	Addr string

	tcp     net.Listener
	udp     *net.UDPConn
	payload []byte

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	live  chan struct{} // receives after each connection closes
}

// ListenTargets opens the target sockets on listenHost:port (port 0: any
// free port, the same for TCP and UDP). Flows reach them at
// advertiseHost:port. Nothing is served until Serve.
func ListenTargets(listenHost string, port int, advertiseHost string) (*Targets, error) {
	for attempt := 0; ; attempt++ {
		t, err := listenTargets(listenHost, port)
		if err == nil {
			_, p, _ := net.SplitHostPort(t.tcp.Addr().String())
			t.Addr = net.JoinHostPort(advertiseHost, p)
			return t, nil
		}
		// A free TCP port may be taken for UDP: try another.
		if port != 0 || attempt == 10 {
			return nil, err
		}
	}
}

func listenTargets(host string, port int) (*Targets, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	tcpAddr := tcp.Addr().(*net.TCPAddr)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: tcpAddr.IP, Port: tcpAddr.Port})
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("targets: UDP port %d: %w", tcpAddr.Port, err)
	}
	udp.SetReadBuffer(udpBufferSize)
	udp.SetWriteBuffer(udpBufferSize)
	payload := make([]byte, payloadSize)
	r := rand.NewChaCha8([32]byte{'s', 'w', 'a', 'r', 'm'})
	r.Read(payload)
	return &Targets{tcp: tcp, udp: udp, payload: payload,
		conns: make(map[net.Conn]struct{}), live: make(chan struct{}, 1)}, nil
}

// Serve answers flows until ctx ends, then closes every socket and returns
// once all its goroutines have ended.
func (t *Targets) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() {
		t.tcp.Close()
		t.udp.Close()
		t.mu.Lock()
		for c := range t.conns {
			c.Close()
		}
		t.mu.Unlock()
	})
	defer stop()
	wg.Go(t.serveUDP)
	// Out of descriptors, say: the flows that need them fail and say so,
	// and Accept retries shortly.
	err := listener.Accept(ctx, t.tcp, &wg, nil, func(c net.Conn) {
		t.mu.Lock()
		if ctx.Err() != nil {
			t.mu.Unlock()
			c.Close()
			return
		}
		t.conns[c] = struct{}{}
		t.mu.Unlock()
		t.serveConn(c)
		c.Close()
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
		select {
		case t.live <- struct{}{}:
		default:
		}
	})
	t.udp.Close()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("targets: %w", err)
	}
	return nil
}

// Open returns how many TCP connections the targets hold.
func (t *Targets) Open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// waitIdle waits until the targets hold at most n connections, or ctx ends.
func (t *Targets) waitIdle(ctx context.Context, n int) bool {
	for t.Open() > n {
		select {
		case <-t.live:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (t *Targets) serveConn(c net.Conn) {
	var op [1]byte
	if _, err := io.ReadFull(c, op[:]); err != nil {
		return
	}
	switch op[0] {
	case opEcho:
		buf := make([]byte, 16<<10)
		io.CopyBuffer(writerOnly{c}, readerOnly{c}, buf)
	case opUpload:
		buf := make([]byte, 128<<10)
		n, err := io.CopyBuffer(writerOnly{io.Discard}, readerOnly{c}, buf)
		if err == nil {
			c.Write(binary.BigEndian.AppendUint64(nil, uint64(n)))
		}
	case opDownload:
		var b [8]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return
		}
		// Send until the count is reached or the flow half-closes: the
		// client stops a download that way, and then reads what is in
		// flight to the end, so the flow ends cleanly all along the path.
		var stop atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			io.Copy(io.Discard, readerOnly{c})
			stop.Store(true)
		}()
		for left := min(binary.BigEndian.Uint64(b[:]), maxFlowBytes); left > 0 && !stop.Load(); {
			n, err := c.Write(t.payload[:min(left, uint64(len(t.payload)))])
			left -= uint64(n)
			if err != nil {
				break
			}
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		<-done
	}
}

// serveUDP echoes each datagram to where it came from.
func (t *Targets) serveUDP() {
	buf := make([]byte, 65536)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		t.udp.WriteToUDPAddrPort(buf[:n], from)
	}
}

// readerOnly and writerOnly hide ReadFrom and WriteTo, so io.CopyBuffer
// uses the buffer it is given.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }
