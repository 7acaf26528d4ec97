package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// Reachability is the last end-to-end check of the forwarded port: the
// exit connected to it from outside the client's link, as a peer would.
type Reachability struct {
	Port      uint16    `json:"port"`
	Reachable bool      `json:"reachable"`
	Checked   time.Time `json:"checked"`
	// TCP and UDP say what each probe found (see wire.ProbeTCP and
	// wire.ProbeUDP); empty when the check itself failed.
	TCP   string `json:"tcp,omitempty"`
	UDP   string `json:"udp,omitempty"`
	Error string `json:"error,omitempty"`
}

// Default waits of the port's checks.
const (
	defaultProbeEvery  = 5 * time.Minute
	defaultTargetEvery = 30 * time.Second
	// firstProbeAfter gives the torrent client time to take a new port
	// before the first check of it.
	firstProbeAfter = 10 * time.Second
)

// reach keeps the forwarded port's checks: the exit's probes of it, and
// whether the local target takes TCP.
type reach struct {
	mu   sync.Mutex
	last *Reachability
	// probing serialises probes; a request during one waits for it.
	probing sync.Mutex

	tcpOff      atomic.Bool   // the exit was told to refuse inbound TCP
	tcpClosings atomic.Uint64 // times it was told so
}

// Reachability returns the last check of the forwarded port, nil before
// the first.
func (c *Client) Reachability() *Reachability {
	c.reach.mu.Lock()
	defer c.reach.mu.Unlock()
	if c.reach.last == nil {
		return nil
	}
	r := *c.reach.last
	return &r
}

// CheckPort has the exit probe the forwarded port now, and returns the
// result, which Report shows from then on.
func (c *Client) CheckPort(ctx context.Context) Reachability {
	c.reach.probing.Lock()
	defer c.reach.probing.Unlock()
	res, port, err := c.pool.CheckPort(ctx)
	r := Reachability{Port: port, Checked: time.Now()}
	if err != nil {
		r.Error = err.Error()
	} else {
		r.TCP, r.UDP = res.TCP.String(), res.UDP.String()
		r.Reachable = res.TCP == wire.ProbeTCPAccepted || res.UDP == wire.ProbeUDPAnswered
	}
	if errors.Is(err, pool.ErrNoForward) || ctx.Err() != nil {
		return r // nothing was checked
	}
	c.reach.mu.Lock()
	prev := c.reach.last
	c.reach.last = &r
	c.reach.mu.Unlock()
	switch {
	case err != nil:
		c.log.Debug("cannot check the forwarded port", "port", port, "err", err)
	case !r.Reachable && (prev == nil || prev.Reachable || prev.Port != port):
		c.log.Warn("the forwarded port is not reachable: peers cannot connect to the torrent client; is it running, and listening on the forwarded port?",
			"port", port, "tcp", r.TCP, "udp", r.UDP)
		c.events.add(EventReach, fmt.Sprintf("port %d not reachable (tcp %s, udp %s)", port, r.TCP, r.UDP))
	case r.Reachable && (prev == nil || !prev.Reachable || prev.Port != port):
		c.log.Info("the forwarded port is reachable", "port", port, "tcp", r.TCP, "udp", r.UDP)
		c.events.add(EventReach, fmt.Sprintf("port %d reachable (tcp %s, udp %s)", port, r.TCP, r.UDP))
	}
	return r
}

// checkPort probes the forwarded port firstProbeAfter after each new port,
// then every ProbeEvery, until ctx ends.
func (c *Client) checkPort(ctx context.Context, newPort <-chan uint16) {
	every := c.cfg.Tuning.ProbeEvery
	if every <= 0 {
		every = defaultProbeEvery
	}
	first := min(firstProbeAfter, every)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-newPort:
			t.Reset(first)
			continue
		case <-t.C:
		}
		if c.pool.Status().ForwardedPort != 0 {
			c.CheckPort(ctx)
		}
		t.Reset(every)
	}
}

// keepTCP has the exit accept TCP on the forwarded port again once the
// local target listens: while the exit refuses TCP (because a connection
// to the target was refused, see Config.Forward), it dials the target
// every TargetEvery and at each new port. It leaves a target that takes
// TCP alone.
func (c *Client) keepTCP(ctx context.Context, newPort <-chan uint16) {
	every := c.cfg.Tuning.TargetEvery
	if every <= 0 {
		every = defaultTargetEvery
	}
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-newPort:
		case <-t.C:
		}
		t.Reset(every)
		if port := c.pool.Status().ForwardedPort; port != 0 && c.reach.tcpOff.Load() {
			c.checkTarget(ctx, c.target(port))
		}
	}
}

// checkTarget dials the TCP target once and tells the exit what it found.
func (c *Client) checkTarget(ctx context.Context, target netip.AddrPort) {
	d := net.Dialer{Timeout: 3 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", target.String())
	switch {
	case err == nil:
		conn.Close()
		c.setInboundTCP(true, target)
	case errors.Is(err, syscall.ECONNREFUSED):
		c.setInboundTCP(false, target)
	}
	// Anything else (a timeout, ctx ending) says nothing either way.
}

// setInboundTCP has the exit accept or refuse TCP on the forwarded port,
// when that changes.
func (c *Client) setInboundTCP(on bool, target netip.AddrPort) {
	if c.reach.tcpOff.Load() == !on {
		return
	}
	c.reach.tcpOff.Store(!on)
	c.pool.SetInboundTCP(on)
	if on {
		c.log.Info("the forward target accepts TCP again: the exit accepts TCP on the forwarded port", "dst", target)
		return
	}
	c.reach.tcpClosings.Add(1)
	c.log.Info("the forward target accepts no TCP (a torrent client that proxies its peers takes uTP only): the exit refuses TCP on the forwarded port",
		"dst", target)
}
