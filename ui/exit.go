package ui

import (
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
)

// ExitView is what the exit's page reads of a running exit. Stats is
// required; the rest is optional.
type ExitView struct {
	Peer  string   // the exit's peer ID
	Addrs []string // the addresses clients use, PEERID@HOST:PORT
	// AddrsNow, when set, is read at every snapshot instead of Addrs: an
	// exit's addresses change with its router's mappings.
	AddrsNow func() []string
	Started  time.Time
	Stats    func() exit.Stats
	// Ports, when set, lists the forwarded ports lent and in use, and
	// how many more could be lent.
	Ports func() (inUse []uint16, free int)
	// NAT, when set, lists the mappings the exit holds on its router.
	NAT func() []NATMapping
	// DHT, when set, says what the exit publishes on the DHT (nil: off).
	DHT func() *exit.DHTReport
}

// NATMapping is a port the exit's router forwards to it (UPnP IGD or
// NAT-PMP).
type NATMapping struct {
	Protocol string    `json:"protocol"`         // tcp, udp
	External string    `json:"external"`         // the router's public HOST:PORT
	Internal int       `json:"internal"`         // the exit's own port
	Method   string    `json:"method,omitempty"` // upnp, natpmp
	Expires  time.Time `json:"expires,omitzero"` // when it lapses unless renewed
	Error    string    `json:"error,omitempty"`  // why it is not mapped
}

// ExitStatus is the exit's snapshot: what its page shows and its
// /api/status serves.
type ExitStatus struct {
	Peer    string    `json:"peer"`
	Addrs   []string  `json:"addrs,omitempty"`
	Started time.Time `json:"started,omitzero"`
	At      time.Time `json:"at"`

	Clients   int   `json:"clients"`    // with a link open now
	Links     int   `json:"links"`      // open now
	FlowsOpen int64 `json:"flows_open"` // UDP associations and forwards included
	UDPOpen   int64 `json:"udp_open"`   // UDP associations open
	Forwards  int64 `json:"forwards"`   // forwarded ports in use

	Flows    exitFlows `json:"flows"` // since the start, by kind
	BytesIn  uint64    `json:"bytes_in"`
	BytesOut uint64    `json:"bytes_out"`

	// Refused counts what the exit refused since its start, by reason:
	// links (allow_list, full, client_links, handshake), flows (policy,
	// flow_limit, udp_limit), datagrams (udp_policy, udp_rate) and
	// inbound connections the client did not take (inbound).
	Refused map[string]uint64 `json:"refused"`

	Ports     []uint16     `json:"ports,omitempty"`      // forwarded ports in use
	FreePorts *int         `json:"free_ports,omitempty"` // with port forwarding
	NAT       []NATMapping `json:"nat,omitempty"`
	// DHT is the exit's presence on the Mainline DHT; absent when off.
	DHT *exit.DHTReport `json:"dht,omitempty"`
}

type exitFlows struct {
	Connect uint64 `json:"connect"`
	UDP     uint64 `json:"udp"`
	Inbound uint64 `json:"inbound"`
	Links   uint64 `json:"links"` // links admitted
}

// Bytes returns the bytes the exit carried: TCP flows and UDP datagrams.
func (s ExitStatus) Bytes() (in, out uint64) { return s.BytesIn, s.BytesOut }

// Status reads the exit's snapshot.
func (v ExitView) Status() ExitStatus {
	st := v.Stats()
	addrs := v.Addrs
	if v.AddrsNow != nil {
		addrs = v.AddrsNow()
	}
	s := ExitStatus{Peer: v.Peer, Addrs: addrs, Started: v.Started, At: time.Now(),
		Clients: st.Clients, Links: st.Links, FlowsOpen: st.FlowsOpen, UDPOpen: st.UDP.Active, Forwards: st.Forward.Active,
		Flows:    exitFlows{Connect: st.Flows.Connect, UDP: st.Flows.UDP, Inbound: st.Flows.Inbound, Links: st.LinksAccepted},
		BytesIn:  st.BytesIn + st.UDP.BytesIn,
		BytesOut: st.BytesOut + st.UDP.BytesOut,
		Refused: map[string]uint64{
			"allow_list": st.RefusedAllowList, "full": st.RefusedFull, "client_links": st.Limits.LinksRefused,
			"handshake": st.RefusedHandshake, "policy": st.PolicyRefusals, "flow_limit": st.RefusedFlows,
			"udp_limit": st.UDP.RefusedTooMany, "udp_policy": st.UDP.DropPolicy, "udp_rate": st.UDP.DropRate,
			"inbound": st.Forward.Refused,
		},
	}
	if v.Ports != nil {
		var free int
		s.Ports, free = v.Ports()
		s.FreePorts = &free
	}
	if v.NAT != nil {
		s.NAT = v.NAT()
	}
	if v.DHT != nil {
		s.DHT = v.DHT()
	}
	return s
}
