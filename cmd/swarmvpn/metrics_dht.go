package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/exitnet/discovery/mainline"
)

// dhtCollector reports a DHT node's figures, and the client finder's when
// finder is not nil.
func dhtCollector(node func() (mainline.Stats, bool), finder func() *client.DHTStats) prometheus.Collector {
	var (
		nodes    = gauge("swarmvpn_dht_nodes", "Nodes in the DHT routing table.")
		ops      = counter("swarmvpn_dht_operations_total", "DHT operations by kind (announce, publish, lookup, get) and result (ok, failed).", "op", "result")
		last     = gauge("swarmvpn_dht_last_success_timestamp_seconds", "When each kind of DHT operation last succeeded (Unix time; 0: never).", "op")
		rejected = counter("swarmvpn_dht_items_rejected_total", "BEP 44 items from the DHT that did not verify, by reason.", "reason")
		dropped  = counter("swarmvpn_dht_candidates_dropped_total", "Candidate exit addresses from the DHT not used, by reason.", "reason")
		path     = gauge("swarmvpn_dht_path", "1 for how the client's DHT node reaches the DHT now: off, direct (this machine's address) or exit.", "path")
		dgrams   = counter("swarmvpn_dht_datagrams_total", "Datagrams of the client's DHT node, by path (direct, exit) and direction (sent, received).", "path", "direction")
		probes   = counter("swarmvpn_dht_probes_total", "Candidate exits from the DHT probed, by result (ok, failed).", "result")
		items    = counter("swarmvpn_dht_exits_found_by_id_total", "Exits found by their peer ID (BEP 44 item).")
	)
	unix := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.Unix())
	}
	fams := []family{nodes, ops, last, rejected, dropped}
	if finder != nil {
		fams = append(fams, path, dgrams, probes, items)
	}
	return &snapshotCollector{
		families: fams,
		read: func(emit func(family, float64, ...string)) {
			var s mainline.Stats
			var d *client.DHTStats
			if finder != nil {
				if d = finder(); d == nil {
					return
				}
				s = d.Node
			} else {
				var ok bool
				if s, ok = node(); !ok {
					return
				}
			}
			emit(nodes, float64(s.Nodes))
			for _, o := range []struct {
				op       string
				ok, fail uint64
				at       time.Time
			}{{"announce", s.Announces, s.AnnounceFailures, s.LastAnnounce}, {"publish", s.Publishes, s.PublishFailures, s.LastPublish},
				{"lookup", s.Lookups, s.LookupFailures, s.LastLookup}, {"get", s.Gets, s.GetFailures, s.LastGet}} {
				emit(ops, float64(o.ok), o.op, "ok")
				emit(ops, float64(o.fail), o.op, "failed")
				emit(last, unix(o.at), o.op)
			}
			r := s.ItemsRejected
			emit(rejected, float64(r.Malformed), "malformed")
			emit(rejected, float64(r.WrongKey), "wrong_key")
			emit(rejected, float64(r.Oversize), "oversize")
			emit(rejected, float64(r.Signature), "signature")
			emit(rejected, float64(r.Encoding), "encoding")
			c := s.CandidatesDropped
			emit(dropped, float64(c.Invalid), "invalid")
			emit(dropped, float64(c.Forbidden), "forbidden")
			emit(dropped, float64(c.PerNet), "per_net")
			emit(dropped, float64(c.OverLimit), "over_limit")
			if d == nil {
				return
			}
			emit(dropped, float64(d.ProbeFailures), "probe_failed")
			emit(dropped, float64(d.Untrusted), "untrusted")
			for _, p := range []client.DHTPath{client.DHTOff, client.DHTDirect, client.DHTExit} {
				v := 0.0
				if d.Path == p {
					v = 1
				}
				emit(path, v, string(p))
			}
			emit(dgrams, float64(d.DirectSent), "direct", "sent")
			emit(dgrams, float64(d.DirectReceived), "direct", "received")
			emit(dgrams, float64(d.ExitSent), "exit", "sent")
			emit(dgrams, float64(d.ExitReceived), "exit", "received")
			emit(probes, float64(d.Probes-d.ProbeFailures), "ok")
			emit(probes, float64(d.ProbeFailures), "failed")
			emit(items, float64(d.ItemsFound))
		},
	}
}
