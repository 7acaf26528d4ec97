package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
)

// clientCollector reports a client's figures.
func clientCollector(c *client.Client) prometheus.Collector {
	var (
		up      = gauge("swarmvpn_client_link_up", "1 when a link to an exit is up and carries new flows, else 0.")
		links   = gauge("swarmvpn_client_links_open", "Links to exits open now: the active one, the standby, probes.")
		rtt     = gauge("swarmvpn_client_link_rtt_seconds", "The active link's last measured round trip; 0 when unknown.")
		fails   = counter("swarmvpn_client_failovers_total", "Times a link other than the first became active: failovers to the standby, reconnects, switches to a nearer exit.")
		downs   = counter("swarmvpn_client_link_downs_total", "Active links lost.")
		dials   = counter("swarmvpn_client_dial_failures_total", "Attempts to link to an exit that failed or found it unsuitable.")
		reasoc  = counter("swarmvpn_client_udp_reassociations_total", "UDP associations to the exit re-opened after the previous one failed.")
		port    = gauge("swarmvpn_client_forwarded_port", "The port the exit forwards to this client; 0 for none.")
		reach   = gauge("swarmvpn_client_port_reachable", "1 when the exit's last probe of the forwarded port reached the torrent client, 0 when it did not, -1 before a probe or when it failed.")
		probed  = gauge("swarmvpn_client_port_checked_timestamp_seconds", "When the forwarded port was last probed (Unix time); 0 before the first probe.")
		tcpOff  = gauge("swarmvpn_client_inbound_tcp_refusing", "1 while the exit refuses TCP on the forwarded port because the local target accepts none.")
		tcpCl   = counter("swarmvpn_client_inbound_tcp_closings_total", "Times the exit was told to refuse TCP on the forwarded port because the local target accepted none.")
		annSeen = counter("swarmvpn_client_announces_total", "Tracker announces seen while a port was forwarded, by protocol: http, udp.", "proto")
		annRew  = counter("swarmvpn_client_announce_port_rewrites_total", "Tracker announces whose port was rewritten into the forwarded port.")
		annStr  = counter("swarmvpn_client_announce_addr_strips_total", "ip=/ipv4=/ipv6= announce parameters (or UDP IP fields) that named the user's own address, removed.")
		annBad  = counter("swarmvpn_client_announce_malformed_total", "Announce-like requests passed unchanged because they could not be rewritten.")
		toTgt   = counter("swarmvpn_client_udp_to_target_total", "Datagrams from the forwarded port delivered to the local target before the torrent client had sent any.")
	)
	return &snapshotCollector{
		families: []family{up, links, rtt, fails, downs, dials, reasoc, port, reach, probed, tcpOff, tcpCl,
			annSeen, annRew, annStr, annBad, toTgt,
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
			reachable, checked := -1.0, 0.0
			if r := s.Reach; r != nil {
				checked = float64(r.Checked.Unix())
				switch {
				case r.Error != "":
				case r.Reachable:
					reachable = 1
				default:
					reachable = 0
				}
			}
			emit(reach, reachable)
			emit(probed, checked)
			emit(tcpOff, boolFloat(s.TCPRefusing))
			emit(tcpCl, float64(s.TCPClosings))
			emit(annSeen, float64(s.Announces.HTTP), "http")
			emit(annSeen, float64(s.Announces.UDP), "udp")
			emit(annRew, float64(s.Announces.PortRewrites))
			emit(annStr, float64(s.Announces.AddrStrips))
			emit(annBad, float64(s.Announces.Malformed))
			emit(toTgt, float64(u.ToTarget))
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

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
