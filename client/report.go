package client

import (
	"cmp"
	"net"
	"strconv"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/portfwd/announce"
	"github.com/swarmvpn/swarmvpn/proxy"
)

// Report is what a running client tells 'swarmvpn status', as JSON on its
// control socket. The field names are a file format: 'status --json'
// prints them as they come.
type Report struct {
	Peer  string    `json:"peer"`
	Exit  string    `json:"exit"` // PEERID@HOST:PORT
	Link  string    `json:"link"` // connecting, up, down
	Since time.Time `json:"since"`
	RTT   string    `json:"rtt,omitempty"` // through both hops on two
	// Relay is the relay of a two-hop path (PEERID@HOST:PORT), and
	// RelayRTT the round trip to it.
	Relay          string       `json:"relay,omitempty"`
	RelayRTT       string       `json:"relay_rtt,omitempty"`
	Hops           int          `json:"hops,omitempty"`
	LastError      string       `json:"last_error,omitempty"`
	SOCKS          string       `json:"socks"`
	HTTP           string       `json:"http,omitempty"`
	ForwardedPort  uint16       `json:"forwarded_port,omitempty"`
	PublicEndpoint string       `json:"public_endpoint,omitempty"` // exit host:forwarded port
	ForwardError   string       `json:"forward_error,omitempty"`   // why the exit lent no port
	Forward        string       `json:"forward,omitempty"`         // what --forward asks for: auto, off, HOST:PORT
	Traffic        *Traffic     `json:"traffic,omitempty"`
	Exits          []ExitReport `json:"exits,omitempty"` // every exit the client knows
	// Reachability is the last end-to-end check of the forwarded port.
	Reachability *Reachability `json:"reachability,omitempty"`
	// InboundTCP says whether the exit accepts TCP on the forwarded port:
	// "accepting", or "refusing" while the local target takes none.
	InboundTCP string `json:"inbound_tcp,omitempty"`
	// Announces counts the tracker announces rewritten; nil when the
	// rewriting is off.
	Announces *AnnounceReport `json:"announces,omitempty"`
	DHT       *DHTReport      `json:"dht,omitempty"` // nil when the DHT is off
	// QBittorrent is the newest check of qBittorrent's settings, with
	// --qbittorrent.
	QBittorrent *QBittorrentReport `json:"qbittorrent,omitempty"`
	// Advice says in one line what to do when something is wrong.
	Advice string  `json:"advice,omitempty"`
	Events []Event `json:"events,omitempty"` // recent events, oldest first
}

// DHTReport is the state of the client's DHT finder.
type DHTReport struct {
	Path        string    `json:"path"`  // off, direct, exit
	Nodes       int       `json:"nodes"` // in the routing table
	LastLookup  time.Time `json:"last_lookup,omitzero"`
	LastGet     time.Time `json:"last_get,omitzero"`
	Found       uint64    `json:"found"`          // exits found and verified
	Probes      uint64    `json:"probes"`         // candidates probed
	Failures    uint64    `json:"probe_failures"` // candidates dropped
	DirectSent  uint64    `json:"direct_sent"`    // datagrams on this machine's own DHT socket
	DirectRecv  uint64    `json:"direct_received"`
	ExitSent    uint64    `json:"exit_sent"` // datagrams through the exit
	ExitRecv    uint64    `json:"exit_received"`
	ItemsFound  uint64    `json:"items_found"` // exits found by peer ID
	Untrusted   uint64    `json:"untrusted"`
	ItemsForged uint64    `json:"items_rejected"`
}

// Traffic is what the client has carried since it started, read at one
// instant: two reports a moment apart give the rates. Bytes are payload,
// counted as they pass.
type Traffic struct {
	At        time.Time `json:"at"`
	FlowsOpen int64     `json:"flows_open"` // UDP associations included
	UDPOpen   int64     `json:"udp_open"`   // UDP associations open
	Flows     uint64    `json:"flows"`      // opened since start: TCP, UDP associations, inbound
	BytesIn   uint64    `json:"bytes_in"`   // from the internet
	BytesOut  uint64    `json:"bytes_out"`  // to the internet
}

// AnnounceReport counts what the rewriting of tracker announces did.
type AnnounceReport struct {
	HTTP         uint64 `json:"http"`          // HTTP announces seen while a port was forwarded
	UDP          uint64 `json:"udp"`           // UDP (BEP 15) announces seen while a port was forwarded
	PortRewrites uint64 `json:"port_rewrites"` // of those, ones whose port was changed
	AddrStrips   uint64 `json:"addr_strips"`   // ip=/ipv4=/ipv6= naming the user's addresses, removed
	Malformed    uint64 `json:"malformed"`     // announce-like requests passed unchanged
}

// ExitReport is one known exit, for 'swarmvpn peers'.
type ExitReport struct {
	Exit      string   `json:"exit"` // PEERID@HOST:PORT
	Source    string   `json:"source"`
	Role      string   `json:"role,omitempty"` // active, standby, relay (of the active path)
	RTT       string   `json:"rtt,omitempty"`
	Caps      []string `json:"caps,omitempty"`
	Load      float64  `json:"load"`
	Age       string   `json:"age"`
	LastError string   `json:"last_error,omitempty"`
	// Verified is when the exit's descriptor last verified on a link.
	Verified time.Time `json:"verified,omitzero"`
}

// Stats is a snapshot of the client's figures, for metrics.
type Stats struct {
	Link pool.Status    // the active link
	Pool pool.Stats     // links, failovers, flows through the pool
	UDP  proxy.UDPStats // SOCKS5 UDP associations
	// BytesIn and BytesOut count what TCP flows carried, through the
	// proxies and from the forwarded port.
	BytesIn, BytesOut uint64
	// DHT is the DHT finder's; nil when the DHT is off.
	DHT *DHTStats
	// Announces counts the rewriting of tracker announces; AnnounceFix
	// says whether it is on.
	Announces   announce.Stats
	AnnounceFix bool
	// Reach is the last check of the forwarded port, nil before one.
	Reach *Reachability
	// TCPRefusing: the exit was told to refuse TCP on the forwarded port,
	// as the local target takes none; TCPClosings counts the times.
	TCPRefusing bool
	TCPClosings uint64
}

// Stats returns a snapshot of the client's figures.
func (c *Client) Stats() Stats {
	s := Stats{Link: c.pool.Status(), Pool: c.pool.Stats(), UDP: c.socks.UDPStats(),
		Announces: c.announces.Stats(), AnnounceFix: c.announceOpt != nil, Reach: c.Reachability(),
		TCPRefusing: c.reach.tcpOff.Load(), TCPClosings: c.reach.tcpClosings.Load()}
	if c.dht != nil {
		d := c.dht.Stats()
		s.DHT = &d
	}
	f := c.socks.FlowStats()
	s.BytesIn, s.BytesOut = s.Pool.InboundBytesIn+f.BytesIn, s.Pool.InboundBytesOut+f.BytesOut
	if c.http != nil {
		h := c.http.FlowStats()
		s.BytesIn, s.BytesOut = s.BytesIn+h.BytesIn, s.BytesOut+h.BytesOut
	}
	return s
}

// Report returns what the control socket tells about the client.
func (c *Client) Report() Report {
	s := c.Stats()
	st := s.Link
	r := Report{Peer: c.cfg.Identity.ID().String(), Link: string(st.State), Since: st.Since, LastError: st.LastError,
		SOCKS: c.SOCKSAddr(), HTTP: c.HTTPAddr(), ForwardedPort: st.ForwardedPort, ForwardError: st.ForwardError}
	p := s.Pool
	r.Traffic = &Traffic{At: time.Now(), FlowsOpen: p.FlowsOpen, UDPOpen: p.UDPOpen, Flows: p.Flows.Connect + p.Flows.UDP + p.Flows.Inbound,
		BytesIn: s.BytesIn + s.UDP.BytesIn, BytesOut: s.BytesOut + s.UDP.BytesOut}
	if st.Exit.Addr != "" {
		r.Exit = st.Exit.String()
	}
	if st.RTT > 0 {
		r.RTT = st.RTT.Round(time.Microsecond).String()
	}
	r.Hops = max(c.cfg.Hops, 1)
	if st.Relay.Addr != "" {
		r.Relay = st.Relay.String()
	}
	if st.RelayRTT > 0 {
		r.RelayRTT = st.RelayRTT.Round(time.Microsecond).String()
	}
	if st.ForwardedPort != 0 {
		host, _, _ := net.SplitHostPort(st.Exit.Addr)
		r.PublicEndpoint = net.JoinHostPort(host, strconv.Itoa(int(st.ForwardedPort)))
		r.InboundTCP = "accepting"
		if s.TCPRefusing {
			r.InboundTCP = "refusing"
		}
	}
	r.Reachability = s.Reach
	if s.AnnounceFix {
		a := s.Announces
		r.Announces = &AnnounceReport{HTTP: a.HTTP, UDP: a.UDP, PortRewrites: a.PortRewrites, AddrStrips: a.AddrStrips, Malformed: a.Malformed}
	}
	for _, e := range c.pool.Exits() {
		er := ExitReport{Exit: e.Exit.String(), Source: string(e.Source), Role: string(e.Role), Caps: e.Caps, Load: e.Load,
			Age: e.Age.String(), LastError: e.LastErr, Verified: e.Verified}
		if e.Relaying && er.Role == "" {
			er.Role = "relay"
		}
		if e.RTT > 0 {
			er.RTT = e.RTT.Round(time.Microsecond).String()
		}
		r.Exits = append(r.Exits, er)
	}
	if d := s.DHT; d != nil {
		rj := d.Node.ItemsRejected
		r.DHT = &DHTReport{Path: string(d.Path), Nodes: d.Node.Nodes, LastLookup: d.LastLookup, LastGet: d.Node.LastGet,
			Found: d.Found, Probes: d.Probes, Failures: d.ProbeFailures, DirectSent: d.DirectSent, DirectRecv: d.DirectReceived,
			ExitSent: d.ExitSent, ExitRecv: d.ExitReceived, ItemsFound: d.ItemsFound, Untrusted: d.Untrusted,
			ItemsForged: rj.Malformed + rj.WrongKey + rj.Oversize + rj.Signature + rj.Encoding}
	}
	r.Forward = cmp.Or(c.cfg.Forward, "auto")
	r.QBittorrent = c.doctor.report()
	r.Advice = advice(r, !c.cfg.forwardOff(), len(r.Exits))
	r.Events = c.events.list()
	return r
}

// Bytes returns what the client carried, from the internet (in) and to it
// (out), for a status page's rate chart; 0 without Traffic.
func (r Report) Bytes() (in, out uint64) {
	if r.Traffic == nil {
		return 0, 0
	}
	return r.Traffic.BytesIn, r.Traffic.BytesOut
}
