package mainline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	alog "github.com/anacrolix/log"
)

// ErrClosed is returned by operations on a Node that has stopped.
var ErrClosed = errors.New("dht node closed")

// Bounds on work done before the node is usable.
const (
	resolveTimeout = 10 * time.Second
	resolveCache   = time.Minute
	// readyNodes is how many nodes loaded from the state file make the node ready before its
	// first bootstrap ends.
	readyNodes = 8
	// itemExpiry is how long this node keeps BEP 44 items others put on it.
	itemExpiry = 2 * time.Hour
)

// Node is one Mainline DHT node. Create it with New, start it with Run; its methods wait until it
// is ready (bootstrapped, or its saved table loaded), their context ends, or it stops.
type Node struct {
	cfg Config
	log *slog.Logger

	ready chan struct{} // closed when srv is set and the table is usable
	done  chan struct{} // closed when Run has returned
	stop  chan struct{} // closed by Close
	once  sync.Once     // guards close(stop)

	started atomic.Bool
	srv     atomic.Pointer[dht.Server]
	allowed atomic.Pointer[map[netip.Addr]bool] // resolved bootstrap addresses

	resolveMu  sync.Mutex
	resolved   []netip.AddrPort
	resolvedAt time.Time

	items *itemStore
	peers *peerStore
	stats statsCounters
}

// New validates cfg and returns a Node; nothing listens until Run.
func New(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:   cfg,
		log:   cfg.Log,
		ready: make(chan struct{}),
		done:  make(chan struct{}),
		stop:  make(chan struct{}),
		items: newItemStore(),
		peers: newPeerStore(),
	}
	empty := map[netip.Addr]bool{}
	n.allowed.Store(&empty)
	return n, nil
}

// Close stops the node (Run returns once everything it started has ended). It is idempotent.
func (n *Node) Close() error {
	n.once.Do(func() { close(n.stop) })
	return nil
}

// Ready is closed once the node can serve operations.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Addr is the node's UDP address, or nil before Run has opened it.
func (n *Node) Addr() net.Addr {
	if s := n.srv.Load(); s != nil {
		return s.Addr()
	}
	return nil
}

// Run opens the socket, loads the saved table, bootstraps, and keeps the routing table until ctx
// is cancelled or Close is called. It saves the table when it returns, and returns only after
// every goroutine it started has ended.
func (n *Node) Run(ctx context.Context) error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("dht node: Run called twice")
	}
	defer close(n.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	conn := n.cfg.Conn
	if conn == nil {
		var err error
		conn, err = net.ListenPacket("udp", n.cfg.Listen)
		if err != nil {
			return fmt.Errorf("dht listen %s: %w", n.cfg.Listen, err)
		}
	}
	n.resolveBootstrap(ctx)

	var st state
	if n.cfg.StateFile != "" {
		var err error
		st, err = loadState(n.cfg.StateFile)
		if err != nil {
			n.log.Warn("dht state file ignored", "err", err)
			st = state{}
		}
	}

	sc := dht.NewDefaultServerConfig()
	sc.Conn = conn
	sc.NodeId = st.ID
	sc.NoSecurity = true
	sc.StartingNodes = n.startingNodes
	sc.IPBlocklist = &blocklist{allowPrivate: n.cfg.AllowPrivate, allowed: *n.allowed.Load()}
	sc.PeerStore = n.peers
	sc.Store = n.items
	sc.Exp = itemExpiry
	sc.SendLimiter = n.cfg.SendLimiter
	sc.Logger = bridgeLogger(n.log)
	srv, err := dht.NewServer(sc)
	if err != nil {
		conn.Close()
		return fmt.Errorf("dht start: %w", err)
	}
	loaded := n.addSavedNodes(srv, st.Nodes)
	n.srv.Store(srv)
	n.log.Info("dht node started", "addr", srv.Addr().String(), "saved_nodes", loaded)

	readyNow := srv.NumNodes() >= readyNodes
	if readyNow {
		close(n.ready)
	}
	bctx, bcancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	if _, err := srv.BootstrapContext(bctx); err != nil && ctx.Err() == nil {
		n.log.Warn("dht bootstrap failed; retrying in the background", "err", err)
	}
	bcancel()
	if !readyNow {
		close(n.ready)
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.TableMaintainer() // returns once srv is closed
	}()

	tick := time.NewTicker(n.cfg.StateInterval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			n.saveState(srv)
		}
	}
	n.saveState(srv)
	srv.Close()
	conn.Close() // srv closes it too, asynchronously; the serving goroutine ends with it
	wg.Wait()
	n.log.Info("dht node stopped")
	return nil
}

// server waits until the node is ready and returns its server.
func (n *Node) server(ctx context.Context) (*dht.Server, error) {
	select {
	case <-n.ready:
	case <-n.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-n.stop:
		return nil, ErrClosed
	case <-n.done:
		return nil, ErrClosed
	default:
	}
	return n.srv.Load(), nil
}

// opContext bounds an operation by the node's lifetime and Config.OpTimeout.
func (n *Node) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// resolveBootstrap resolves Config.Bootstrap and records the addresses as allowed even when they
// are private.
func (n *Node) resolveBootstrap(ctx context.Context) []netip.AddrPort {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	var out []netip.AddrPort
	allowed := map[netip.Addr]bool{}
	for _, hp := range n.cfg.Bootstrap {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			continue
		}
		ap, err := netip.ParseAddrPort(hp)
		if err == nil {
			out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
			allowed[ap.Addr().Unmap()] = true
			continue
		}
		p, err := net.LookupPort("udp", port)
		if err != nil {
			continue
		}
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			n.log.Debug("dht bootstrap does not resolve", "peer", hp, "err", err)
			continue
		}
		for _, a := range addrs {
			out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(p)))
			allowed[a.Unmap()] = true
		}
	}
	n.allowed.Store(&allowed)
	return out
}

// startingNodes is the server's fallback when its table is empty.
func (n *Node) startingNodes() ([]dht.Addr, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	n.resolveMu.Lock()
	defer n.resolveMu.Unlock()
	if time.Since(n.resolvedAt) < resolveCache && len(n.resolved) > 0 {
		aps := n.resolved
		return toDHTAddrs(aps), nil
	}
	aps := n.resolveBootstrap(ctx)
	n.resolved, n.resolvedAt = aps, time.Now()
	if srv := n.srv.Load(); srv != nil {
		srv.SetIPBlockList(&blocklist{allowPrivate: n.cfg.AllowPrivate, allowed: *n.allowed.Load()})
	}
	if len(aps) == 0 {
		return nil, errors.New("no bootstrap node resolves")
	}
	return toDHTAddrs(aps), nil
}

func toDHTAddrs(aps []netip.AddrPort) []dht.Addr {
	out := make([]dht.Addr, 0, len(aps))
	for _, ap := range aps {
		out = append(out, dht.NewAddr(net.UDPAddrFromAddrPort(ap)))
	}
	return out
}

// addSavedNodes puts acceptable saved nodes in the table.
func (n *Node) addSavedNodes(srv *dht.Server, nodes []stateNode) int {
	added := 0
	allowed := *n.allowed.Load()
	for _, sn := range nodes {
		if !allowed[sn.Addr.Addr().Unmap()] && checkAddr(sn.Addr, n.cfg.AllowPrivate) != "" {
			continue
		}
		ni := krpc.NodeInfo{ID: sn.ID, Addr: krpc.NodeAddr{IP: net.IP(sn.Addr.Addr().Unmap().AsSlice()), Port: int(sn.Addr.Port())}}
		if ni.ID == ([20]byte{}) {
			continue // the library would ping it; a saved node always has an ID
		}
		if srv.AddNode(ni) == nil {
			added++
		}
	}
	return added
}

func (n *Node) saveState(srv *dht.Server) {
	if n.cfg.StateFile == "" {
		return
	}
	st := state{ID: srv.ID()}
	for _, ni := range srv.Nodes() {
		ap, ok := nodeAddrPort(ni.Addr)
		if !ok {
			continue
		}
		st.Nodes = append(st.Nodes, stateNode{ID: ni.ID, Addr: ap})
	}
	if err := saveState(n.cfg.StateFile, st); err != nil {
		n.log.Warn("dht state not saved", "err", err)
	}
}

// bridgeLogger sends the library's messages to log at Debug: they describe remote behaviour, which
// is not the operator's concern at higher levels.
func bridgeLogger(l *slog.Logger) alog.Logger {
	lg := alog.NewLogger("dht")
	lg.SetHandlers(slogHandler{l})
	return lg.WithFilterLevel(alog.Info)
}

type slogHandler struct{ l *slog.Logger }

func (h slogHandler) Handle(r alog.Record) {
	if !h.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	h.l.Debug("dht: " + r.Text())
}
