package exit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/discovery/mainline"
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
	// Port is the link port announced; 0 means the port Serve's listener
	// is on. An exit behind a NAT announces the port mapped to it.
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
	node *mainline.Node
	pub  *mainline.Publisher // set by runDHT

	mu       sync.Mutex
	material string    // what the published descriptor says, less its times and load noise
	expires  time.Time // when the published descriptor expires
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
	return &dhtState{node: n}, nil
}

// DHT returns a snapshot of the exit's DHT node, and false when the exit
// is not on the DHT.
func (e *Server) DHT() (mainline.Stats, bool) {
	if e.dht == nil {
		return mainline.Stats{}, false
	}
	return e.dht.node.Stats(), true
}

// runDHT runs the node and keeps the exit announced and published until
// ctx ends; it returns after both have stopped.
func (e *Server) runDHT(ctx context.Context, ln net.Addr) {
	d, dc := e.dht, e.cfg.DHT
	port := dc.Port
	if port == 0 {
		if a, ok := ln.(*net.TCPAddr); ok {
			port = a.Port
		}
	}
	pc := dc.Publisher
	pc.Key = e.cfg.Link.Identity.PrivateKey()
	pc.Port = port
	pc.Seq = seqSource(dc.SeqFile, e)
	pc.Log = e.log
	pub, err := mainline.NewPublisher(d.node, pc)
	if err != nil {
		e.log.Error("not on the dht", "err", err)
		return
	}
	d.pub = pub
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := d.node.Run(ctx); err != nil {
			e.log.Error("dht node stopped", "err", err)
		}
	})
	wg.Go(func() { pub.Run(ctx) })
	wg.Go(func() { e.keepPublished(ctx, orDefault(dc.CheckEvery, time.Minute)) })
	wg.Wait()
}

// keepPublished gives the Publisher a freshly signed descriptor at start,
// whenever what it says changes, and when the one published is half way to
// its expiry.
func (e *Server) keepPublished(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		e.refreshDHT(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refreshDHT signs and hands over a new value if the descriptor changed.
func (e *Server) refreshDHT(now time.Time) {
	d := e.dht
	desc := e.describe(now)
	m := material(desc)
	d.mu.Lock()
	same := m == d.material && now.Before(d.expires.Add(-discovery.Lifetime/2))
	d.mu.Unlock()
	if same {
		return
	}
	s, err := discovery.CompactDescriptor(desc, e.cfg.Link.Identity)
	if err == nil {
		var v []byte
		if v, err = s.DHTValue(); err == nil {
			err = d.pub.SetValue(v)
		}
	}
	if err != nil {
		e.log.Warn("descriptor not published on the dht", "err", err)
		return
	}
	d.mu.Lock()
	d.material, d.expires = m, desc.Expires
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
			if err := writeFileAtomic(file, []byte(strconv.FormatInt(seq, 10)+"\n")); err != nil {
				e.log.Warn("dht sequence number not saved; a restart with a clock that went back may publish a stale one", "err", err)
			}
		}
		return seq
	}
}

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
