package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
)

// clientCollector reports a client's figures.
func clientCollector(c *client.Client) prometheus.Collector {
	var (
		up     = gauge("swarmvpn_client_link_up", "1 when a link to an exit is up and carries new flows, else 0.")
		links  = gauge("swarmvpn_client_links_open", "Links to exits open now: the active one, the standby, probes.")
		rtt    = gauge("swarmvpn_client_link_rtt_seconds", "The active link's last measured round trip; 0 when unknown.")
		fails  = counter("swarmvpn_client_failovers_total", "Times a link other than the first became active: failovers to the standby, reconnects, switches to a nearer exit.")
		downs  = counter("swarmvpn_client_link_downs_total", "Active links lost.")
		dials  = counter("swarmvpn_client_dial_failures_total", "Attempts to link to an exit that failed or found it unsuitable.")
		reasoc = counter("swarmvpn_client_udp_reassociations_total", "UDP associations to the exit re-opened after the previous one failed.")
		port   = gauge("swarmvpn_client_forwarded_port", "The port the exit forwards to this client; 0 for none.")
	)
	return &snapshotCollector{
		families: []family{up, links, rtt, fails, downs, dials, reasoc, port,
			flowsOpen, flowsAll, flowBytes, udpDatagrams, udpBytes, udpDrops},
		read: func(emit func(family, float64, ...string)) {
			s := c.Stats()
			st, p, u := s.Link, s.Pool, s.UDP
			isUp := 0.0
			if st.State == pool.StateUp {
				isUp = 1
			}
			emit(up, isUp)
			emit(links, float64(p.Links))
			emit(rtt, st.RTT.Seconds())
			emit(fails, float64(max(p.Activations, 1)-1))
			emit(downs, float64(p.LinkDowns))
			emit(dials, float64(p.DialFailures))
			emit(reasoc, float64(u.Reassociations))
			emit(port, float64(st.ForwardedPort))
			emitFlows(emit, p.FlowsOpen, p.Flows, false)
			emitInOut(emit, flowBytes, s.BytesIn, s.BytesOut)
			emitInOut(emit, udpDatagrams, u.DatagramsIn, u.DatagramsOut)
			emitInOut(emit, udpBytes, u.BytesIn, u.BytesOut)
			emit(udpDrops, float64(u.DropFrag), "fragment")
			emit(udpDrops, float64(u.DropMalformed), "malformed")
			emit(udpDrops, float64(u.DropStranger), "stranger")
			emit(udpDrops, float64(u.DropNoClientPort), "no_client_port")
			emit(udpDrops, float64(u.DropLinkDown), "link_down")
			emit(udpDrops, float64(u.DropSendFailed), "send_failed")
			emit(udpDrops, float64(u.DropTooLong), "too_long")
		},
	}
}
