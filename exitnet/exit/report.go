package exit

import (
	"maps"
	"slices"
	"time"
)

// Report is what the exit says of itself on its control socket.
type Report struct {
	Peer  string   `json:"peer"`
	Addrs []string `json:"addrs"` // published, as in its descriptor
	// Public is how the router in front of the exit maps it; nil when the
	// exit has no PortMapper.
	Public  *PublicReport `json:"public,omitempty"`
	Reach   ReachReport   `json:"reach"`
	Publish bool          `json:"publish"` // see Publishable
	// DHT is the exit's presence on the Mainline DHT; nil when it is off.
	DHT   *DHTReport `json:"dht,omitempty"`
	Stats Stats      `json:"stats"`
}

// DHTReport is what the exit's DHT node holds and last did.
type DHTReport struct {
	Publishing   bool      `json:"publishing"`     // announcing and publishing now (see Publishable)
	Port         int       `json:"port,omitempty"` // the link port announced
	Nodes        int       `json:"nodes"`          // in the routing table
	Seq          int64     `json:"seq,omitempty"`  // of the item last published
	LastAnnounce time.Time `json:"last_announce,omitzero"`
	LastPublish  time.Time `json:"last_publish,omitzero"`
	Publishes    uint64    `json:"publishes"`
	Failures     uint64    `json:"publish_failures"` // announces and publishes no node accepted
}

// PublicReport is what the router maps for the exit.
type PublicReport struct {
	Addr      string `json:"addr,omitempty"`       // the router's public address
	AddrError string `json:"addr_error,omitempty"` // why there is none
	LinkPort  uint16 `json:"link_port"`
	// LinkExternal is the link port's external port; 0 while the router
	// does not map it, and LinkError says why.
	LinkExternal uint16          `json:"link_external"`
	LinkError    string          `json:"link_error,omitempty"`
	Forwards     []ForwardReport `json:"forwards,omitempty"`
}

// ForwardReport is a lent port and the external port its client was told
// (0: the router did not map it).
type ForwardReport struct {
	Port     uint16 `json:"port"`
	External uint16 `json:"external"`
}

// Report returns the exit's state now.
func (e *Server) Report() Report {
	r := Report{
		Peer:    e.cfg.Link.Identity.ID().String(),
		Addrs:   e.Addrs(),
		Reach:   e.Reach(),
		Publish: e.Publishable(),
		Stats:   e.Stats(),
	}
	r.DHT = e.DHTReport()
	if e.cfg.NAT == nil {
		return r
	}
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	p := &PublicReport{AddrError: e.pub.addrErr, LinkPort: e.pub.linkPort, LinkExternal: e.pub.linkExt, LinkError: e.pub.linkErr}
	if e.pub.addr.IsValid() {
		p.Addr = e.pub.addr.String()
	}
	for _, port := range slices.Sorted(maps.Keys(e.pub.forwards)) {
		p.Forwards = append(p.Forwards, ForwardReport{Port: port, External: e.pub.forwards[port].external()})
	}
	r.Public = p
	return r
}

// DHTReport returns what the exit's DHT node holds and last did; nil when
// the exit is not on the DHT.
func (e *Server) DHTReport() *DHTReport {
	d, ok := e.DHT()
	if !ok {
		return nil
	}
	return &DHTReport{Publishing: d.Publishing, Port: d.Port, Nodes: d.Nodes, Seq: d.Seq,
		LastAnnounce: d.LastAnnounce, LastPublish: d.LastPublish, Publishes: d.Publishes,
		Failures: d.AnnounceFailures + d.PublishFailures}
}
