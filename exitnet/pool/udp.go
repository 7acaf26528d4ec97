package pool

import (
	"context"
	"sync"

	"github.com/libp2p/go-yamux/v5"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// UDP is the client's end of a UDP association at the exit: one
// stream of datagram frames, one UDP socket at the exit.
type UDP struct {
	st *yamux.Stream
	// Port is the exit-side port of the association's socket: what peers
	// on the internet see as this client's UDP source port.
	Port uint16

	wmu  sync.Mutex
	wbuf []byte

	rbuf  []byte // used by ReadFrom only, which is not concurrent
	stats *counters

	end    func() // counts the association closed
	closed sync.Once
}

// Associate opens a UDP association through the exit.
func (p *Pool) Associate(ctx context.Context) (*UDP, error) {
	st, resp, err := p.open(ctx, wire.Request{Kind: wire.KindUDP})
	if err != nil {
		return nil, err
	}
	return &UDP{st: st, Port: resp.Bound.Port, end: p.stats.flows.Begin(wire.KindUDP), stats: &p.stats,
		wbuf: make([]byte, 0, wire.MaxFrameLen), rbuf: make([]byte, wire.MaxFrameLen)}, nil
}

// WriteTo sends payload to dst, an IP or a name the exit resolves. It
// blocks while the link's window for this association is full; it never
// holds up other flows. A datagram that cannot be framed (too long for its
// address) is dropped and counted; an error means the association is dead.
func (a *UDP) WriteTo(payload []byte, dst wire.Addr) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	frame, err := wire.AppendDatagram(a.wbuf[:0], dst, payload)
	if err != nil {
		a.stats.udpUnsendable.Add(1)
		return nil
	}
	_, err = a.st.Write(frame)
	return err
}

// ReadFrom reads the next datagram the exit relays, from any address, into
// p; a longer datagram is truncated. Frames that are not datagrams are
// skipped and counted. It must not be called concurrently with itself.
func (a *UDP) ReadFrom(p []byte) (int, wire.Addr, error) {
	for {
		body, err := wire.ReadFrame(a.st, a.rbuf)
		if err != nil {
			return 0, wire.Addr{}, err
		}
		src, payload, err := wire.ParseDatagram(body)
		if err != nil || !src.IP.IsValid() {
			a.stats.udpMalformed.Add(1)
			continue
		}
		return copy(p, payload), src, nil
	}
}

// Close ends the association at both ends.
func (a *UDP) Close() error {
	a.closed.Do(a.end)
	return a.st.Close()
}
