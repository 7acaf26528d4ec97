package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
)

// exitCollector reports an exit's figures.
func exitCollector(e *exit.Server) prometheus.Collector {
	var (
		links    = gauge("swarmvpn_exit_links_open", "Links from clients open now.")
		clients  = gauge("swarmvpn_exit_clients", "Clients (peer IDs) with a link open now.")
		accepted = counter("swarmvpn_exit_links_accepted_total", "Links admitted after the handshake.")
		refused  = counter("swarmvpn_exit_links_refused_total",
			"Links refused, by reason: allow_list (the client is not on it), full (the exit serves as many clients as it allows), client_links (the client holds as many links as it may), handshake (it failed).", "reason")
		dropped      = counter("swarmvpn_exit_links_dropped_total", "Links closed because their client was taken off the allow-list.")
		fallback     = counter("swarmvpn_exit_fallback_total", "Connections served as a web site because they did not prove themselves admitted clients: browsers, probers, garbage, replayed proofs, refused clients.")
		rateBytes    = counter("swarmvpn_exit_rate_limited_bytes_total", "Bytes charged to per-client rate limits, TCP and UDP, both directions.")
		windows      = counter("swarmvpn_exit_window_growth_refused_total", "Stream receive-window growths refused at the per-client buffer cap.")
		flowBufs     = counter("swarmvpn_exit_flow_buffer_refused_total", "Large read buffers refused to moving flows at the per-client buffer cap (a flow asks again on each full small read).")
		bufPeak      = gauge("swarmvpn_exit_buffer_peak_bytes", "The most receive-window memory one client has reserved at once beyond its streams' initial windows.")
		halfOpen     = counter("swarmvpn_exit_half_open_expired_total", "TCP flows closed because, after one direction ended, the other carried nothing for the half-open timeout.")
		policy       = counter("swarmvpn_exit_policy_refusals_total", "TCP flows refused because the exit policy refuses the destination.")
		flowsRefused = counter("swarmvpn_exit_flows_refused_total",
			"Flows refused, by reason: flow_limit (the client holds as many flows as it may), udp_limit (as many UDP associations).", "reason")
		udpOpen    = gauge("swarmvpn_udp_associations_open", "UDP associations open now.")
		udpExpired = counter("swarmvpn_exit_udp_expired_total", "UDP associations closed for idleness.")
		forwards   = gauge("swarmvpn_exit_forwards_open", "Forwarded ports lent to clients now.")
		inboundRef = counter("swarmvpn_exit_inbound_refused_total",
			"Connections to forwarded ports refused, by reason: client (the client did not take it), limit (the client was carrying as many as it may), rate (the remote address opened too many too fast).", "reason")
		fwdRefused = counter("swarmvpn_exit_forwards_refused_total",
			"Forward requests refused, by reason: policy, client_limit (the client holds its share), exhausted (no port free), rate (the client's network created too many leases this hour).", "reason")
		hsPending = gauge("swarmvpn_exit_handshakes_pending", "Connections whose TLS handshake is in progress now.")
		hsShed    = counter("swarmvpn_exit_handshakes_shed_total", "Unfinished handshakes closed to make room under the handshake caps.")
		relayed   = counter("swarmvpn_exit_relayed_total", "Clients' links relayed to other exits (two-hop paths).")
		relayOpen = gauge("swarmvpn_exit_relayed_open", "Relayed links open now.")
		relayB    = counter("swarmvpn_exit_relayed_bytes_total", "Bytes relayed between clients and other exits, both directions.")
		relayRef  = counter("swarmvpn_exit_relay_refused_total",
			"Relay requests refused, by reason: off (relaying is off), policy (an address the policy refuses), unverified (no verified exit there), full (at the relay caps), malformed, dial (a verified exit could not be reached).", "reason")
		tcpOff   = gauge("swarmvpn_exit_forwards_tcp_refusing", "Forwarded ports whose TCP listener is closed now because the client's target accepts no TCP.")
		tcpClose = counter("swarmvpn_exit_forward_tcp_closings_total", "Times a forwarded port's TCP listener was closed at the client's request.")
		probes   = counter("swarmvpn_exit_forward_probes_total", "Reachability probes of forwarded ports run for clients.")
		reach    = counter("swarmvpn_exit_reach_requests_total",
			"Reach requests of other exits, by result: answered (dialled back the asker's address), answered_subnet (dialled another address of the asker's IPv6 /64), refused_addr (not the asker's own public address), busy (at the caps).", "result")
		descOnly = counter("swarmvpn_exit_descriptor_only_links_total", "Links admitted only to read the exit's descriptor (relays verifying it).")
	)
	return &snapshotCollector{
		families: []family{links, clients, accepted, refused, dropped, fallback, policy, flowsRefused, udpOpen, udpExpired, forwards, inboundRef,
			fwdRefused, hsPending, hsShed, relayed, relayOpen, relayB, relayRef, tcpOff, tcpClose, probes, reach, descOnly,
			rateBytes, windows, bufPeak, halfOpen,
			flowsOpen, flowsAll, flowBytes, udpDatagrams, udpBytes, udpDrops},
		read: func(emit func(family, float64, ...string)) {
			s := e.Stats()
			u, f, l := s.UDP, s.Forward, s.Limits
			emit(links, float64(s.Links))
			emit(clients, float64(s.Clients))
			emit(accepted, float64(s.LinksAccepted))
			emit(refused, float64(s.RefusedAllowList), "allow_list")
			emit(refused, float64(s.RefusedFull), "full")
			emit(refused, float64(l.LinksRefused), "client_links")
			emit(refused, float64(s.RefusedHandshake), "handshake")
			emit(dropped, float64(l.ClientsDropped))
			emit(fallback, float64(s.Fallback))
			emit(descOnly, float64(s.DescOnly))
			emit(reach, float64(s.Reach.Answered), "answered")
			emit(reach, float64(s.Reach.AnsweredSubnet), "answered_subnet")
			emit(reach, float64(s.Reach.RefusedAddr), "refused_addr")
			emit(reach, float64(s.Reach.RefusedBusy), "busy")
			emit(rateBytes, float64(l.RateLimitedBytes))
			emit(windows, float64(l.WindowGrowthRefused))
			emit(flowBufs, float64(l.FlowBufferRefused))
			emit(bufPeak, float64(l.BufferPeak))
			emit(halfOpen, float64(l.HalfOpenExpired))
			emit(policy, float64(s.PolicyRefusals))
			emit(flowsRefused, float64(s.RefusedFlows), "flow_limit")
			emit(flowsRefused, float64(u.RefusedTooMany), "udp_limit")
			emitFlows(emit, s.FlowsOpen, s.Flows, true)
			emitInOut(emit, flowBytes, s.BytesIn, s.BytesOut)
			emit(udpOpen, float64(u.Active))
			emitInOut(emit, udpDatagrams, u.DatagramsIn, u.DatagramsOut)
			emitInOut(emit, udpBytes, u.BytesIn, u.BytesOut)
			emit(udpDrops, float64(u.DropPolicy), "policy")
			emit(udpDrops, float64(u.DropResolve), "resolve")
			emit(udpDrops, float64(u.DropMalformed), "malformed")
			emit(udpDrops, float64(u.DropSend), "send_failed")
			emit(udpDrops, float64(u.DropRate), "rate")
			emit(udpDrops, float64(u.DropTooLong), "too_long")
			emit(udpExpired, float64(u.ExpiredIdle))
			emit(forwards, float64(f.Active))
			emit(inboundRef, float64(f.Refused), "client")
			emit(inboundRef, float64(f.InboundRefusedCap), "limit")
			emit(inboundRef, float64(f.InboundRefusedRate), "rate")
			emit(fwdRefused, float64(f.RefusedPolicy), "policy")
			emit(fwdRefused, float64(f.RefusedCap), "client_limit")
			emit(fwdRefused, float64(f.RefusedExhausted), "exhausted")
			emit(fwdRefused, float64(f.RefusedRate), "rate")
			emit(hsPending, float64(s.HandshakesPending))
			emit(hsShed, float64(s.HandshakesShed))
			r := s.Relay
			emit(relayed, float64(r.Flows))
			emit(relayOpen, float64(r.Open))
			emit(relayB, float64(r.Bytes))
			emit(relayRef, float64(r.RefusedOff), "off")
			emit(relayRef, float64(r.RefusedPolicy), "policy")
			emit(relayRef, float64(r.RefusedUnverified), "unverified")
			emit(relayRef, float64(r.RefusedFull), "full")
			emit(relayRef, float64(r.RefusedMalformed), "malformed")
			emit(relayRef, float64(r.Failed), "dial")
			emit(tcpOff, float64(f.TCPOff))
			emit(tcpClose, float64(f.TCPClosings))
			emit(probes, float64(f.Probes))
		},
	}
}
