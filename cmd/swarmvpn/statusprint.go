package main

import (
	"fmt"
	"io"
	"time"

	"github.com/swarmvpn/swarmvpn/client"
)

// printStatus writes r as aligned lines for a person, with rates since
// prev when it is an earlier report of the same client.
func printStatus(w io.Writer, r client.Report, prev *client.Traffic, now time.Time) {
	line := func(label, value string) { fmt.Fprintf(w, "%-8s %s\n", label, value) }
	or := func(s, dflt string) string {
		if s == "" {
			return dflt
		}
		return s
	}
	if r.Relay != "" {
		line("relay", r.Relay)
	}
	line("exit", or(r.Exit, "none"))
	link := or(r.Link, "unknown")
	if !r.Since.IsZero() {
		link += fmt.Sprintf(" since %s (%s)", r.Since.Local().Format(time.DateTime), now.Sub(r.Since).Round(time.Second))
	}
	line("link", link)
	switch {
	case r.Relay != "" && r.RTT != "":
		line("rtt", fmt.Sprintf("%s to the relay, %s through both hops", or(r.RelayRTT, "?"), r.RTT))
	case r.RTT != "":
		line("rtt", r.RTT)
	}
	if r.LastError != "" {
		line("error", r.LastError)
	}
	switch {
	case r.ForwardedPort == 0 && r.ForwardError != "":
		line("port", "none forwarded: "+r.ForwardError)
	case r.ForwardedPort == 0:
		line("port", "none forwarded")
	case r.PublicEndpoint != "":
		line("port", fmt.Sprintf("%d, reachable at %s", r.ForwardedPort, r.PublicEndpoint))
	default:
		line("port", fmt.Sprint(r.ForwardedPort))
	}
	if r.InboundTCP == "refusing" {
		line("tcp", "refused at the exit: the local target accepts no TCP (peers connect by uTP)")
	}
	if rc := r.Reachability; rc != nil {
		line("reach", reachLine(rc, now))
	}
	if a := r.Announces; a != nil {
		line("announce", fmt.Sprintf("%d HTTP, %d UDP seen; %d ports rewritten, %d addresses removed, %d malformed",
			a.HTTP, a.UDP, a.PortRewrites, a.AddrStrips, a.Malformed))
	}
	if t := r.Traffic; t != nil {
		line("flows", fmt.Sprintf("%d open, %d since start", t.FlowsOpen, t.Flows))
		in, out := sizeOf(t.BytesIn), sizeOf(t.BytesOut)
		if rin, rout, ok := rates(prev, t); ok {
			in += " (" + sizeOf(rin) + "/s)"
			out += " (" + sizeOf(rout) + "/s)"
		}
		line("traffic", "in "+in+", out "+out)
	}
	if d := r.DHT; d != nil {
		line("dht", dhtLine(d, now))
	}
	if r.Advice != "" {
		line("advice", r.Advice)
	}
	line("socks", or(r.SOCKS, "off"))
	line("http", or(r.HTTP, "off"))
	if r.Peer != "" {
		line("peer", r.Peer)
	}
}

// rates returns the bytes per second in and out between two reports, and
// false when they do not make a pair: no earlier one, no time between
// them, or counters that went back (the client restarted).
func rates(a, b *client.Traffic) (in, out uint64, ok bool) {
	if a == nil || b == nil || !b.At.After(a.At) || b.BytesIn < a.BytesIn || b.BytesOut < a.BytesOut {
		return 0, 0, false
	}
	secs := b.At.Sub(a.At).Seconds()
	return uint64(float64(b.BytesIn-a.BytesIn) / secs), uint64(float64(b.BytesOut-a.BytesOut) / secs), true
}

// sizeOf writes a byte count with a binary unit: 512 B, 1.5 KiB, 3.2 GiB.
func sizeOf(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}

// dhtLine sums up the client's DHT finder for 'status'.
func dhtLine(d *client.DHTReport, now time.Time) string {
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	}
	s := fmt.Sprintf("%s, %d nodes, last lookup %s, %d exits found (%d candidates dropped)", d.Path, d.Nodes, ago(d.LastLookup), d.Found, d.Failures)
	if d.DirectSent > 0 {
		s += fmt.Sprintf("; %d datagrams sent from this machine", d.DirectSent)
	}
	if d.ExitSent > 0 {
		s += fmt.Sprintf(", %d through the exit", d.ExitSent)
	}
	return s
}

// reachLine says what the last check of the forwarded port found.
func reachLine(rc *client.Reachability, now time.Time) string {
	when := fmt.Sprintf("checked %s ago", now.Sub(rc.Checked).Round(time.Second))
	switch {
	case rc.Error != "":
		return fmt.Sprintf("unknown: %s (%s)", rc.Error, when)
	case rc.Reachable:
		return fmt.Sprintf("port %d reachable (tcp %s, udp %s; %s)", rc.Port, rc.TCP, rc.UDP, when)
	}
	return fmt.Sprintf("port %d NOT reachable (tcp %s, udp %s; %s)", rc.Port, rc.TCP, rc.UDP, when)
}
