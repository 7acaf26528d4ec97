package exit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/discovery/mainline"
	"github.com/swarmvpn/swarmvpn/internal/statefile"
)

// The exit on the Mainline DHT: it announces its link port on the day's
// rendezvous hash (BEP 5) and publishes its signed descriptor as a BEP 44
// mutable item under its own key, so that clients that never heard of it
// can find it, and clients that know its peer ID find it again when its
// address changes. See exitnet/discovery/mainline and discovery.ParseDHTValue.

// DHTConfig configures the exit's presence on the DHT. The zero value of a
// field means its default.
type DHTConfig struct {
	// Node configures the exit's DHT node: its UDP socket (Conn or Listen),
	// Bootstrap (nil: the public routers), StateFile (where the routing
	// table is kept between runs), AllowPrivate for labs. Log defaults to
	// the exit's.
	Node mainline.Config
	// SeqFile keeps the last sequence number published, so that it grows
	// across restarts even when the clock goes back. Empty: Unix seconds
	// only.
	SeqFile string
	// Port is the link port announced; 0 means the external port the
	// router maps to the link (Config.NAT) when there is one, else the
	// port Serve's listener is on. Whatever the port, the exit announces
	// and publishes only while it is Publishable.
	Port int
	// CheckEvery is how often the exit looks whether its descriptor has
	// changed (addresses, capabilities, policy, forwarding, a load step
	// of 0.1, version) and republishes at once if so. Default 1m.
	CheckEvery time.Duration
	// Publisher tunes the announce and republish intervals (tests); its
	// Key, Port, Seq and Log are set by the exit.
	Publisher mainline.PublisherConfig
}

// dhtState is the exit's DHT node and what it last published.
type dhtState struct {
	node  *mainline.Node
	nudge chan struct{} // the exit's public address or reachability changed

	mu       sync.Mutex
	pub      *mainline.Publisher // nil while the exit does not publish
	port     int                 // the link port pub announces
	material string              // what the published descriptor says, less its times and load noise
	expires  time.Time           // when the published descriptor expires
}

// newDHT validates cfg.DHT and builds the node; nothing listens until Serve.
func newDHT(cfg Config) (*dhtState, error) {
	dc := cfg.DHT
	if dc.Port < 0 || dc.Port > 65535 || dc.CheckEvery < 0 {
		return nil, errors.New("exit dht: port out of range or negative check interval")
	}
	nc := dc.Node
	if nc.Log == nil {
		nc.Log = cfg.Log
	}
	n, err := mainline.New(nc)
	if err != nil {
		return nil, fmt.Errorf("exit dht: %w", err)
	}
	return &dhtState{node: n, nudge: make(chan struct{}, 1)}, nil
}

// DHTState is what the exit's status says of its presence on the DHT.
type DHTState struct {
	mainline.Stats
	// Publishing is whether the exit announces and publishes itself now:
	// not while it knows the internet cannot reach it (Publishable).
	Publishing bool
	// Port is the link port announced (the router's external one when it
	// maps the link port); 0 while not publishing.
	Port int
	// Seq is the sequence number of the item last published (0: none
	// yet since the Publisher started).
	Seq int64
}

// DHT returns a snapshot of the exit's DHT node and what it publishes, and
// false when the exit is not on the DHT.
func (e *Server) DHT() (DHTState, bool) {
	if e.dht == nil {
		return DHTState{}, false
	}
	d := e.dht
	d.mu.Lock()
	st := DHTState{Publishing: d.pub != nil, Port: d.port}
	pub := d.pub
	d.mu.Unlock()
	if pub != nil {
		st.Seq = pub.Seq()
	}
	st.Stats = d.node.Stats()
	return st, true
}

// nudgeDHT makes the exit look at once whether and what it publishes, after
// its public address or its reachability changed.
func (e *Server) nudgeDHT() {
	if e.dht == nil {
		return
	}
	select {
	case e.dht.nudge <- struct{}{}:
	default:
	}
}

// runDHT runs the node until ctx ends, and keeps the exit announced and
// published while it is publishable; it returns after all have stopped.
func (e *Server) runDHT(ctx context.Context, ln net.Addr) {
	listenPort := 0
	if a, ok := ln.(*net.TCPAddr); ok {
		listenPort = a.Port
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.dht.node.Run(ctx); err != nil {
			e.log.Error("dht node stopped", "err", err)
		}
	})
	wg.Go(func() { e.keepPublished(ctx, listenPort, orDefault(e.cfg.DHT.CheckEvery, time.Minute)) })
	wg.Go(func() {
		select { // the socket's port becomes one of the exit's own at once
		case <-e.dht.node.Ready():
			e.ownAddrs.refresh(ctx)
			e.mapDHT(ctx)
		case <-ctx.Done():
		}
	})
	wg.Wait()
}

// mapDHT maps the DHT socket's UDP port on the router, when the exit has a
// PortMapper: behind a NAT, other nodes could otherwise not reach the
// exit's node, which would sit in their routing tables unanswering. The
// PortMapper keeps the mapping (and keeps trying when it fails) until it
// stops, when it deletes it.
func (e *Server) mapDHT(ctx context.Context) {
	if e.cfg.NAT == nil {
		return
	}
	a, ok := e.dht.node.Addr().(*net.UDPAddr)
	if !ok || a.Port == 0 {
		return
	}
	// No time limit: a mapper busy at start (finding the router, deleting
	// a crashed run's mappings) may take longer than mapTimeout to take
	// the request, and a request given up before it is taken is lost: the
	// DHT port, unlike the link's and the lent ones, is not asked for
	// again. Once taken, the mapper keeps the port wanted and retries it.
	ext, err := e.cfg.NAT.Add(ctx, "udp", uint16(a.Port))
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		e.log.Warn("cannot map the DHT port on the router: other DHT nodes cannot reach this exit's node until it can (it keeps trying)",
			"port", a.Port, "err", err)
		return
	}
	e.log.Info("DHT port mapped on the router", "port", a.Port, "external", ext)
}

// errDHTPort refuses to lend the port of the exit's DHT socket.
var errDHTPort = errors.New("the exit's DHT node uses this UDP port")

// dhtOnPort reports whether the exit's DHT socket is on UDP port p, which
// may fall in the forwarded range (an ephemeral port, by default). Such a
// port is not lent: its UDP side is not the client's to receive on, and
// the router's UDP mapping of it, the DHT's, would be deleted when the
// lease ends.
func (e *Server) dhtOnPort(p uint16) bool {
	if e.dht == nil {
		return false
	}
	if a, ok := e.dht.node.Addr().(*net.UDPAddr); ok && a.Port == int(p) {
		return true
	}
	_, port, err := net.SplitHostPort(e.cfg.DHT.Node.Listen)
	return err == nil && port == strconv.Itoa(int(p))
}

// announcePort is the link port to announce on the rendezvous hash:
// DHTConfig.Port when set, else the router's external port for the link
// when it maps one, else the listener's.
func (e *Server) announcePort(listenPort int) int {
	if p := e.cfg.DHT.Port; p != 0 {
		return p
	}
	if pub := e.publicLink(); pub.IsValid() {
		return int(pub.Port())
	}
	return listenPort
}

// keepPublished runs a Publisher while the exit is Publishable, started
// again when the port to announce changes, and gives it a freshly signed
// descriptor at start, whenever what the descriptor says changes, and when
// the one published is half way to its expiry. It returns after the
// Publisher has stopped.
func (e *Server) keepPublished(ctx context.Context, listenPort int, every time.Duration) {
	d := e.dht
	seq := seqSource(e.cfg.DHT.SeqFile, e)
	var (
		stop func() // stops the running Publisher and waits for it
		said bool   // the log said the exit does not publish
	)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		port := 0
		if e.Publishable() {
			port = e.announcePort(listenPort)
		}
		d.mu.Lock()
		running, current := d.pub != nil, d.port
		d.mu.Unlock()
		if running && port != current {
			stop()
			stop = nil
			d.mu.Lock()
			d.pub, d.port, d.material = nil, 0, ""
			d.mu.Unlock()
			running = false
		}
		switch {
		case port == 0 && !said:
			e.log.Info("not publishing this exit on the dht while it is not known to be reachable from the internet " +
				"(see its reachability in 'swarmvpn status --exit')")
			said = true
		case port != 0 && !running:
			var err error
			if stop, err = e.startPublisher(ctx, port, seq); err != nil {
				e.log.Error("not on the dht", "err", err)
				return
			}
			said = false
		}
		if port != 0 {
			e.refreshDHT(time.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.nudge:
		}
	}
}

// startPublisher starts a Publisher announcing port and returns what stops
// it.
func (e *Server) startPublisher(ctx context.Context, port int, seq func() int64) (stop func(), err error) {
	d := e.dht
	pc := e.cfg.DHT.Publisher
	pc.Key = e.cfg.Link.Identity.PrivateKey()
	pc.Port = port
	pc.Seq = seq
	pc.Log = e.log
	pub, err := mainline.NewPublisher(d.node, pc)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.pub, d.port, d.material = pub, port, ""
	d.mu.Unlock()
	e.log.Info("publishing this exit on the dht", "port", port)
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pub.Run(pctx)
	}()
	return func() { cancel(); <-done }, nil
}

// refreshDHT signs and hands over a new value if the descriptor changed.
func (e *Server) refreshDHT(now time.Time) {
	d := e.dht
	desc := e.describe(now)
	m := material(desc)
	d.mu.Lock()
	pub := d.pub
	same := m == d.material && now.Before(d.expires.Add(-discovery.Lifetime/2))
	d.mu.Unlock()
	if same || pub == nil {
		return
	}
	s, err := discovery.CompactDescriptor(desc, e.cfg.Link.Identity)
	if err == nil {
		var v []byte
		if v, err = s.DHTValue(); err == nil {
			err = pub.SetValue(v)
		}
	}
	if err != nil {
		e.log.Warn("descriptor not published on the dht", "err", err)
		return
	}
	d.mu.Lock()
	if d.pub == pub {
		d.material, d.expires = m, desc.Expires
	}
	d.mu.Unlock()
}

// material is what a descriptor says that is worth a republish: all but its
// times, with the load in steps of 0.1 and free ports as none or some.
func material(d discovery.Descriptor) string {
	d.IssuedAt, d.Expires = time.Time{}, time.Time{}
	d.Load = math.Round(d.Load*10) / 10
	d.FreePorts = min(d.FreePorts, 1)
	return fmt.Sprintf("%+v", d)
}

// seqSource returns the Publisher's sequence numbers: Unix seconds, but
// always above the last one used, which is kept in file when one is given.
func seqSource(file string, e *Server) func() int64 {
	var last int64
	if file != "" {
		if b, err := os.ReadFile(file); err == nil {
			last, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		}
	}
	return func() int64 {
		seq := max(time.Now().Unix(), last+1)
		last = seq
		if file != "" {
			if err := statefile.WriteAtomic(file, []byte(strconv.FormatInt(seq, 10)+"\n")); err != nil {
				e.log.Warn("dht sequence number not saved; a restart with a clock that went back may publish a stale one", "err", err)
			}
		}
		return seq
	}
}
