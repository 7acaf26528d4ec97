package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/internal/listener"
	"github.com/swarmvpn/swarmvpn/internal/meter"
)

// metricsFlag turns on the Prometheus endpoint of a long-running role.
func metricsFlag() cli.Flag {
	return stringFlag("metrics", "", "serve Prometheus metrics at http://`HOST:PORT`/metrics, e.g. 127.0.0.1:9273 "+
		"(default: off; anyone who can reach the address can read them)")
}

// listenMetrics opens the listener --metrics asks for, or returns nil when
// metrics are off.
func listenMetrics(cmd *cli.Command, log *slog.Logger) (net.Listener, error) {
	addr := cmd.String("metrics")
	if addr == "" {
		return nil, nil
	}
	ln, err := listen(addr, "--metrics")
	if err != nil {
		return nil, err
	}
	if !listener.Loopback(ln.Addr().String()) {
		log.Warn("metrics are served beyond this machine: anyone who can reach the address can read them", "listen", ln.Addr().String())
	}
	log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return ln, nil
}

// newRegistry returns a registry of the Go runtime's and the process's
// metrics and c's.
func newRegistry(c prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), c)
	return reg
}

// serveMetrics serves reg at /metrics on ln until ctx ends, then lets
// scrapes in progress finish (for a second at most) and returns. It closes
// ln.
func serveMetrics(ctx context.Context, ln net.Listener, reg *prometheus.Registry, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	if listener.Loopback(ln.Addr().String()) {
		// Profiles show where a busy exit or client spends its time; they
		// reveal nothing of the traffic, but only this machine may ask.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served: // failed by itself
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// family is one metric name with its help and labels.
type family struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
}

func gauge(name, help string, labels ...string) family {
	return family{prometheus.NewDesc(name, help, labels, nil), prometheus.GaugeValue}
}

func counter(name, help string, labels ...string) family {
	return family{prometheus.NewDesc(name, help, labels, nil), prometheus.CounterValue}
}

// snapshotCollector reports the figures of one snapshot per scrape, so that
// the figures of a scrape agree with one another, and reading them costs
// the data path nothing.
type snapshotCollector struct {
	families []family
	read     func(emit func(f family, v float64, labels ...string))
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.families {
		ch <- f.desc
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	c.read(func(f family, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(f.desc, f.typ, v, labels...)
	})
}

// Metrics both roles report, under the same names.
var (
	flowsOpen = gauge("swarmvpn_flows_open", "Flows open now: TCP flows, UDP associations, inbound connections; at the exit also forwards and descriptor requests.")
	flowsAll  = counter("swarmvpn_flows_total", "Flows opened since start, by kind: connect, udp, inbound, forward, descriptor.", "kind")
	flowBytes = counter("swarmvpn_flow_bytes_total",
		"Bytes TCP flows carried, by direction: in (from the internet toward the client) and out, counted as they pass.", "direction")
	udpDatagrams = counter("swarmvpn_udp_datagrams_total", "UDP datagrams relayed, by direction: in (from the internet) and out.", "direction")
	udpBytes     = counter("swarmvpn_udp_bytes_total", "UDP payload bytes relayed, by direction: in (from the internet) and out.", "direction")
	udpDrops     = counter("swarmvpn_udp_drops_total", "UDP datagrams dropped, by reason.", "reason")
)

func emitFlows(emit func(family, float64, ...string), open int64, n meter.FlowCounts, exit bool) {
	emit(flowsOpen, float64(open))
	emit(flowsAll, float64(n.Connect), "connect")
	emit(flowsAll, float64(n.UDP), "udp")
	emit(flowsAll, float64(n.Inbound), "inbound")
	if exit {
		emit(flowsAll, float64(n.Forward), "forward")
		emit(flowsAll, float64(n.Descriptor), "descriptor")
	}
}

func emitInOut(emit func(family, float64, ...string), f family, in, out uint64) {
	emit(f, float64(in), "in")
	emit(f, float64(out), "out")
}

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
	)
	return &snapshotCollector{
		families: []family{links, clients, accepted, refused, dropped, fallback, policy, flowsRefused, udpOpen, udpExpired, forwards, inboundRef,
			fwdRefused, hsPending, hsShed, relayed, relayOpen, relayB, relayRef, tcpOff, tcpClose, probes,
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
			emit(rateBytes, float64(l.RateLimitedBytes))
			emit(windows, float64(l.WindowGrowthRefused))
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
