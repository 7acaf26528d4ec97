package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
	"github.com/swarmvpn/swarmvpn/exitnet/discovery/mainline"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// DHT configures how the client finds exits on the BitTorrent Mainline
// DHT. The zero value of each field means its default.
//
// The client runs a DHT node only while it has fewer good exits than Want
// (so always when it was given none), or an exit named by peer ID alone to
// find. Addresses from the rendezvous hash are unauthenticated: each is
// probed (TLS handshake: the exit proves its key; its descriptor must
// verify against that key) before the pool may use it, failures are
// remembered for FailureExpiry, and the pool ranks exits by what it
// measures. An exit known by peer ID is looked up by its BEP 44 item.
//
// Privacy: once a link to an exit is up, the node runs over a UDP
// association at that exit, so DHT nodes see the exit's address. Before
// that (a cold start) it queries from this machine, and says so once in
// the log, unless NoDirect.
type DHT struct {
	// Bootstrap lists HOST:PORT of DHT nodes to start from when the saved
	// routing table is empty. nil: the public routers.
	Bootstrap []string
	// Listen is the UDP address for direct queries. Default ":0".
	Listen string
	// NoDirect refuses direct queries: the node runs only through an exit,
	// once one (static, cached, mDNS) is linked.
	NoDirect bool
	// AllowPrivate accepts exits (and DHT nodes) at loopback and private
	// addresses, for labs and tests.
	AllowPrivate bool
	// Want is how many good exits the client wants before it stops
	// looking. Default 3: the active one, the standby and one spare.
	Want int
	// Every is the interval between lookups while short of exits.
	// Default 30s.
	Every time.Duration
	// ProbeTimeout bounds the probe of one candidate. Default 5s.
	ProbeTimeout time.Duration
	// FailureExpiry is how long a candidate that failed its probe is
	// passed over. Default 30m.
	FailureExpiry time.Duration
	// SendLimiter and OpTimeout tune the node (tests: an unlimited
	// limiter per node, short operations).
	SendLimiter *rate.Limiter
	OpTimeout   time.Duration
}

// Defaults of DHT.
const (
	defaultWant          = 3
	defaultEvery         = 30 * time.Second
	defaultProbeTimeout  = 5 * time.Second
	defaultFailureExpiry = 30 * time.Minute
	// probeWidth is how many candidates are probed at once.
	probeWidth = 8
	// maxFailures bounds the remembered failed candidates.
	maxFailures = 4096
	// maxItemLookups bounds the exits looked up by peer ID in one round.
	maxItemLookups = 16
	// maxProbes bounds the candidates probed in one round. The node
	// returns up to maxCandidates; those that failed before are passed
	// over first, so a crowd of bogus announces is worked through, round
	// after round, instead of hiding the real exits behind the same cap.
	maxProbes     = 64
	maxCandidates = 1024
)

// DHTPath is how the client's DHT node reaches the DHT.
type DHTPath string

const (
	DHTOff    DHTPath = "off"    // no node running
	DHTDirect DHTPath = "direct" // from this machine's own socket
	DHTExit   DHTPath = "exit"   // through the active exit's UDP association
)

// DHTStats is what the client's DHT finder has done.
type DHTStats struct {
	Path DHTPath
	Node mainline.Stats // of the node now running, or the last one
	// Datagrams on the client's own DHT socket (Direct) and through the
	// exit (Exit), sent and received.
	DirectSent, DirectReceived, ExitSent, ExitReceived uint64
	Probes, ProbeFailures, Found                       uint64 // candidates probed, failed, added
	ItemLookups, ItemsFound                            uint64 // exits looked up by peer ID
	Untrusted                                          uint64 // exits refused because --trust does not list them
	LastLookup                                         time.Time
}

// finder finds exits on the DHT for the pool.
type finder struct {
	cfg       DHT
	pool      *pool.Pool
	cache     *discovery.Cache // nil without a state dir
	stateFile string
	wanted    []link.PeerID // exits named by peer ID only
	trusted   func(link.PeerID) bool
	log       *slog.Logger

	directSent, directRecv, exitSent, exitRecv atomic.Uint64
	probes, probeFails, found                  atomic.Uint64
	itemLookups, itemsFound, untrusted         atomic.Uint64

	mu         sync.Mutex
	path       DHTPath
	node       *mainline.Node
	last       mainline.Stats
	lastLookup time.Time
	failed     map[string]time.Time // candidate address → passed over until
	probed     map[link.PeerID]time.Time
	warned     bool
}

func newFinder(cfg DHT, p *pool.Pool, c Config, cache *discovery.Cache, wanted []link.PeerID, trusted func(link.PeerID) bool) (*finder, error) {
	if cfg.Want < 0 || cfg.Every < 0 || cfg.ProbeTimeout < 0 || cfg.FailureExpiry < 0 || cfg.OpTimeout < 0 {
		return nil, errors.New("client dht: negative setting")
	}
	cfg.Want = cmp.Or(cfg.Want, defaultWant)
	cfg.Every = cmp.Or(cfg.Every, defaultEvery)
	cfg.ProbeTimeout = cmp.Or(cfg.ProbeTimeout, defaultProbeTimeout)
	cfg.FailureExpiry = cmp.Or(cfg.FailureExpiry, defaultFailureExpiry)
	f := &finder{cfg: cfg, pool: p, cache: cache, wanted: wanted, trusted: trusted, log: c.Log,
		path: DHTOff, failed: map[string]time.Time{}, probed: map[link.PeerID]time.Time{}}
	if c.StateDir != "" {
		f.stateFile = filepath.Join(c.StateDir, "dht.state")
	}
	// Validate the node settings now, so a bad bootstrap is an error of New.
	if _, err := mainline.New(f.nodeConfig(nil)); err != nil {
		return nil, fmt.Errorf("client dht: %w", err)
	}
	return f, nil
}

func (f *finder) nodeConfig(conn net.PacketConn) mainline.Config {
	return mainline.Config{Conn: conn, Listen: f.cfg.Listen, Bootstrap: f.cfg.Bootstrap, StateFile: f.stateFile,
		FreshID: true, Log: f.log, AllowPrivate: f.cfg.AllowPrivate, MaxCandidates: maxCandidates, SendLimiter: f.cfg.SendLimiter, OpTimeout: f.cfg.OpTimeout}
}

// Stats returns a snapshot of the finder.
func (f *finder) Stats() DHTStats {
	f.mu.Lock()
	s := DHTStats{Path: f.path, Node: f.last, LastLookup: f.lastLookup}
	if f.node != nil {
		s.Node = f.node.Stats()
	}
	f.mu.Unlock()
	s.DirectSent, s.DirectReceived = f.directSent.Load(), f.directRecv.Load()
	s.ExitSent, s.ExitReceived = f.exitSent.Load(), f.exitRecv.Load()
	s.Probes, s.ProbeFailures, s.Found = f.probes.Load(), f.probeFails.Load(), f.found.Load()
	s.ItemLookups, s.ItemsFound, s.Untrusted = f.itemLookups.Load(), f.itemsFound.Load(), f.untrusted.Load()
	return s
}

// run looks for exits while the client needs them, until ctx ends.
func (f *finder) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if f.need() {
			if up := f.linkUp(); up || !f.cfg.NoDirect {
				f.session(ctx, up)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (f *finder) linkUp() bool { return f.pool.Status().State == pool.StateUp }

// session runs one node, through the exit or direct, and looks up exits on
// it every Every until the client needs none, the path should change (a
// link came up under a direct node, or the exit's association ended), or
// ctx ends.
func (f *finder) session(ctx context.Context, viaExit bool) {
	var conn net.PacketConn
	var assocDone <-chan struct{}
	if viaExit {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		udp, err := f.pool.Associate(actx)
		cancel()
		if err != nil {
			f.log.Debug("dht: no udp association at the exit", "err", err)
			return
		}
		ec := newExitConn(udp, &f.exitSent, &f.exitRecv)
		conn, assocDone = ec, ec.dead
	} else {
		pc, err := net.ListenPacket("udp", cmp.Or(f.cfg.Listen, mainline.DefaultListen))
		if err != nil {
			f.log.Warn("dht: cannot open a udp socket", "err", err)
			return
		}
		conn = countingConn{PacketConn: pc, sent: &f.directSent, recv: &f.directRecv}
		f.mu.Lock()
		if !f.warned {
			f.warned = true
			f.log.Info("no link to an exit yet: looking for exits on the DHT directly, so DHT nodes see this machine's address until a link is up (--dht-direct=false waits for an exit instead)")
		}
		f.mu.Unlock()
	}
	node, err := mainline.New(f.nodeConfig(conn))
	if err != nil {
		conn.Close()
		f.log.Warn("dht node not started", "err", err)
		return
	}
	path := DHTDirect
	if viaExit {
		path = DHTExit
	}
	f.mu.Lock()
	f.node, f.path = node, path
	f.mu.Unlock()
	f.log.Info("dht node running", "path", path)

	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		node.Run(sctx)
	}()
	defer func() {
		cancel()
		<-done
		f.mu.Lock()
		f.last, f.node, f.path = node.Stats(), nil, DHTOff
		f.mu.Unlock()
	}()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var next time.Time
	for {
		if !f.need() {
			f.log.Info("dht: enough exits; node stopped")
			return
		}
		if !viaExit && f.linkUp() {
			f.log.Info("dht: a link is up; moving the dht node behind the exit")
			return
		}
		if !time.Now().Before(next) {
			f.round(sctx, node)
			next = time.Now().Add(f.cfg.Every)
		}
		select {
		case <-ctx.Done():
			return
		case <-assocDone:
			return
		case <-tick.C:
		}
	}
}

// need reports whether the client should look: fewer good exits than
// Want, or an exit named by peer ID that is not good yet.
func (f *finder) need() bool {
	good := f.good()
	if len(good) < f.cfg.Want {
		return true
	}
	for _, id := range f.wanted {
		if !good[id] {
			return true
		}
	}
	return false
}

// good are the exits the pool has linked, or that verified lately (on a
// link or a probe) and have not failed since.
func (f *finder) good() map[link.PeerID]bool {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	good := map[link.PeerID]bool{}
	for _, e := range f.pool.Exits() {
		recent := now.Sub(e.Verified) < f.cfg.FailureExpiry || now.Sub(f.probed[e.Exit.ID]) < f.cfg.FailureExpiry
		if e.Role != "" || (e.LastErr == "" && recent) {
			good[e.Exit.ID] = true
		}
	}
	return good
}

// round looks up the exits known by peer ID whose address is missing or
// failing, then lists candidates on the rendezvous hashes and probes them.
func (f *finder) round(ctx context.Context, node *mainline.Node) {
	f.findByID(ctx, node)
	if !f.need() {
		return
	}
	cands, err := node.Lookup(ctx, time.Now())
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("dht lookup failed", "err", err)
		}
		return
	}
	f.mu.Lock()
	f.lastLookup = time.Now()
	f.mu.Unlock()
	known := map[string]bool{}
	for _, e := range f.pool.Exits() {
		known[e.Exit.Addr] = true
	}
	now := time.Now()
	var todo []string
	f.mu.Lock()
	for a, until := range f.failed {
		if now.After(until) {
			delete(f.failed, a)
		}
	}
	for _, ap := range cands {
		a := ap.String()
		if known[a] || now.Before(f.failed[a]) || len(todo) >= maxProbes {
			continue
		}
		todo = append(todo, a)
	}
	f.mu.Unlock()
	f.log.Debug("dht candidates", "count", len(cands), "new", len(todo))
	var wg sync.WaitGroup
	sem := make(chan struct{}, probeWidth)
	for _, a := range todo {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			f.probe(ctx, a)
		})
	}
	wg.Wait()
}

// probe vets one candidate address and adds it to the pool if it is an
// exit whose descriptor verifies under the key it proved.
func (f *finder) probe(ctx context.Context, addr string) {
	f.probes.Add(1)
	ctx, cancel := context.WithTimeout(ctx, f.cfg.ProbeTimeout)
	defer cancel()
	p, err := f.pool.Probe(ctx, addr)
	if err == nil && !f.trusted(p.Exit.ID) {
		f.untrusted.Add(1)
		err = fmt.Errorf("exit %s is not in the trust file", p.Exit.ID.Short())
	}
	if err != nil {
		f.probeFails.Add(1)
		f.log.Debug("dht candidate dropped", "peer", addr, "err", err)
		f.mu.Lock()
		if len(f.failed) < maxFailures {
			f.failed[addr] = time.Now().Add(f.cfg.FailureExpiry)
		}
		f.mu.Unlock()
		return
	}
	f.found.Add(1)
	f.mu.Lock()
	f.probed[p.Exit.ID] = time.Now()
	f.mu.Unlock()
	f.log.Info("exit found on the dht", "exit", p.Exit.ID.Short(), "rtt", p.RTT.Round(time.Microsecond))
	f.pool.AddExit(p.Exit, discovery.SourceDHT)
	if f.cache != nil {
		f.cache.Add([]discovery.Known{p.Known})
	}
}

// findByID looks up, by their BEP 44 items, the exits named by peer ID
// alone and the known exits whose links keep failing (their address may
// have changed): an exit keeps its identity when its address changes.
func (f *finder) findByID(ctx context.Context, node *mainline.Node) {
	status := map[link.PeerID]pool.ExitInfo{}
	for _, e := range f.pool.Exits() {
		status[e.Exit.ID] = e
	}
	var ids []link.PeerID
	seen := map[link.PeerID]bool{}
	add := func(id link.PeerID) {
		if !seen[id] && len(ids) < maxItemLookups {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, id := range f.wanted {
		if e, ok := status[id]; !ok || (e.Role == "" && e.LastErr != "") {
			add(id)
		}
	}
	for id, e := range status {
		if e.Role == "" && e.LastErr != "" {
			add(id)
		}
	}
	for _, id := range ids {
		f.itemLookups.Add(1)
		v, _, err := node.Get(ctx, id.PublicKey(), []byte(mainline.ExitSalt))
		if err != nil {
			f.log.Debug("dht: exit not found by peer id", "exit", id.Short(), "err", err)
			continue
		}
		d, s, err := discovery.ParseDHTValue(v, id, time.Now())
		if err != nil {
			f.log.Debug("dht: exit's item dropped", "exit", id.Short(), "err", err)
			continue
		}
		if !f.trusted(id) {
			f.untrusted.Add(1)
			continue
		}
		f.itemsFound.Add(1)
		if e, ok := status[id]; ok && e.Exit.Addr == d.Addrs[0] {
			continue // same address: nothing new
		}
		f.log.Info("exit found on the dht by peer id", "exit", id.Short())
		f.pool.AddExit(link.ExitAddr{ID: id, Addr: d.Addrs[0]}, discovery.SourceDHT)
		if f.cache != nil {
			f.cache.Add([]discovery.Known{{Desc: d, Signed: s}})
		}
	}
}
