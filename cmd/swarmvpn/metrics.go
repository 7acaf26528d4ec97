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
