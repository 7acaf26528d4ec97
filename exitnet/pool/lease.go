package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// ErrNoForward means the active link holds no forwarded port.
var ErrNoForward = errors.New("no forwarded port")

// ErrNoProbe means the exit did not answer a probe in time: it may predate
// probes.
var ErrNoProbe = errors.New("the exit did not answer the probe (an exit too old to probe?)")

// probeWait bounds the wait for a probe's result; the exit bounds the probe
// itself at 8s.
const probeWait = 12 * time.Second

// minMoveGap is the least time between two moved ports the client
// announces. A router moves a port once in hours, and each announcement
// runs the port hook and has qBittorrent announce to all its trackers: a
// faulty or hostile exit sending moves in a stream must not turn that into
// a flood (trackers ban clients that announce too often). A port that
// arrives within the gap is announced at its end, the newest one only.
var minMoveGap = 30 * time.Second

// lease is the client's end of a forward stream: it sends lease messages
// and routes the exit's answers.
type lease struct {
	st   *yamux.Stream
	log  *slog.Logger
	done chan struct{} // closed when the stream's reading ends
	// moved is called from read when the exit says peers now reach the
	// forward at another port; set before read starts.
	moved func(port uint16)

	wmu sync.Mutex

	mu     sync.Mutex
	nextID uint32
	probes map[uint32]chan wire.ProbeResult
	tcp    wire.InboundTCPState // as the exit last said; listening at first
	port   uint16               // the port peers reach the forward at, as the exit last said

	lastMove  time.Time   // when a moved port was last announced
	moveTimer *time.Timer // announces the newest port at the end of the gap; nil: none waits
	ended     bool        // read has returned: announce nothing more
}

func newLease(st *yamux.Stream, port uint16, log *slog.Logger) *lease {
	return &lease{st: st, port: port, log: log, done: make(chan struct{}),
		probes: make(map[uint32]chan wire.ProbeResult), tcp: wire.InboundTCPListening}
}

// read routes the exit's messages until the stream ends.
func (l *lease) read() {
	defer close(l.done)
	defer l.endMoves()
	buf := make([]byte, wire.MaxLeaseMsg)
	for {
		typ, body, err := wire.ReadLeaseMsg(l.st, buf)
		if err != nil {
			if errors.Is(err, wire.ErrLeaseMsg) {
				l.log.Debug("forward: unreadable lease message from the exit", "err", err)
			}
			return
		}
		switch typ {
		case wire.LeaseProbe:
			res, err := wire.ParseProbeResult(body)
			if err != nil {
				continue
			}
			l.mu.Lock()
			ch := l.probes[res.ID]
			delete(l.probes, res.ID)
			l.mu.Unlock()
			if ch != nil {
				ch <- res // buffered
			}
		case wire.LeasePublicPort:
			pp, err := wire.ParsePublicPort(body)
			if err != nil {
				continue
			}
			l.mu.Lock()
			was := l.port
			l.port = pp.Port
			l.mu.Unlock()
			if was != pp.Port {
				l.portMoved()
			}
		case wire.LeaseInboundTCP:
			if len(body) < 1 {
				continue
			}
			state := wire.InboundTCPState(body[0])
			l.mu.Lock()
			l.tcp = state
			l.mu.Unlock()
			if state == wire.InboundTCPLost {
				l.log.Warn("the exit cannot accept TCP on the forwarded port again (another program took it): peers reach the torrent client by uTP only", "port", l.publicPort())
			}
		}
	}
}

// portMoved announces the port the exit last said, at once or, within
// minMoveGap of the last announcement, at the gap's end.
func (l *lease) portMoved() {
	l.mu.Lock()
	if l.moveTimer != nil || l.ended {
		l.mu.Unlock()
		return // the waiting announcement will carry the newest port
	}
	if wait := minMoveGap - time.Since(l.lastMove); wait > 0 {
		l.moveTimer = time.AfterFunc(wait, l.announceMove)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	l.announceMove()
}

// announceMove tells moved the port the exit last said.
func (l *lease) announceMove() {
	l.mu.Lock()
	l.moveTimer = nil
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.lastMove = time.Now()
	port := l.port
	l.mu.Unlock()
	l.log.Warn("the exit's router moved the forwarded port; announcing the new one", "port", port)
	if l.moved != nil {
		l.moved(port)
	}
}

// endMoves drops an announcement still waiting: the forward has ended.
func (l *lease) endMoves() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = true
	if l.moveTimer != nil {
		l.moveTimer.Stop()
		l.moveTimer = nil
	}
}

// publicPort is the port peers reach the forward at, as the exit last
// said.
func (l *lease) publicPort() uint16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.port
}

func (l *lease) send(typ byte, body []byte) error {
	msg, err := wire.AppendLeaseMsg(nil, typ, body)
	if err != nil {
		return err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.st.SetWriteDeadline(time.Now().Add(10 * time.Second))
	defer l.st.SetWriteDeadline(time.Time{})
	_, err = l.st.Write(msg)
	return err
}

// probe asks the exit to probe the port and waits for the result.
func (l *lease) probe(ctx context.Context) (wire.ProbeResult, error) {
	ch := make(chan wire.ProbeResult, 1)
	l.mu.Lock()
	l.nextID++
	id := l.nextID
	l.probes[id] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.probes, id)
		l.mu.Unlock()
	}()
	if err := l.send(wire.LeaseProbe, wire.ProbeRequest{ID: id}.Body()); err != nil {
		return wire.ProbeResult{}, fmt.Errorf("ask the exit to probe port %d: %w", l.publicPort(), err)
	}
	t := time.NewTimer(probeWait)
	defer t.Stop()
	select {
	case res := <-ch:
		return res, nil
	case <-l.done:
		return wire.ProbeResult{}, fmt.Errorf("probe port %d: %w", l.publicPort(), ErrNoForward)
	case <-t.C:
		return wire.ProbeResult{}, ErrNoProbe
	case <-ctx.Done():
		return wire.ProbeResult{}, ctx.Err()
	}
}

// CheckPort asks the active exit to test the forwarded port from outside the
// link, as a peer would (TCP and a uTP SYN over UDP), and returns what it
// found and the port it tested. ErrNoForward: no port is forwarded now;
// ErrNoProbe: the exit did not answer.
func (p *Pool) CheckPort(ctx context.Context) (wire.ProbeResult, uint16, error) {
	p.mu.Lock()
	l := p.lease
	p.mu.Unlock()
	if l == nil {
		return wire.ProbeResult{}, 0, ErrNoForward
	}
	res, err := l.probe(ctx)
	return res, l.publicPort(), err
}

// SetInboundTCP tells the exit whether to accept TCP connections on the
// forwarded port: off when the local target accepts no TCP, so that
// peers see the port closed (a reset) rather than a connection that opens
// and dies. The setting holds for the forwards of later links too.
func (p *Pool) SetInboundTCP(on bool) {
	p.mu.Lock()
	p.tcpOff = !on
	l := p.lease
	p.mu.Unlock()
	if l != nil {
		l.setTCP(on)
	}
}

// InboundTCP reports whether the exit accepts TCP on the forwarded port,
// as it last said; true without a forwarded port.
func (p *Pool) InboundTCP() bool {
	p.mu.Lock()
	l := p.lease
	p.mu.Unlock()
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tcp == wire.InboundTCPListening
}

func (l *lease) setTCP(on bool) {
	b := byte(0)
	if on {
		b = 1
	}
	if err := l.send(wire.LeaseInboundTCP, []byte{b}); err != nil {
		l.log.Debug("forward: cannot tell the exit about inbound TCP", "port", l.publicPort(), "err", err)
	}
}
