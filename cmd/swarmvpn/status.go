package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/internal/control"
)

// maxStatusSize bounds a status document.
const maxStatusSize = 1 << 20

// errNoClient: nothing answers on the control socket.
var errNoClient = errors.New("no client")

// fetchStatus asks the client on the control socket at path for its status,
// returning the document as sent and as read.
func fetchStatus(ctx context.Context, path string) ([]byte, client.Report, error) {
	return fetchRequest(ctx, path, client.RequestStatus, 5*time.Second)
}

// fetchRequest sends request on the control socket at path and reads the
// status that answers it, waiting at most wait.
func fetchRequest(ctx context.Context, path, request string, wait time.Duration) ([]byte, client.Report, error) {
	var r client.Report
	raw, err := fetchDoc(ctx, path, "client", request, wait, &r)
	return raw, r, err
}

// fetchDoc sends request to the swarmvpn role (client or exit) on the
// control socket at path, and reads the status that answers it into v,
// waiting at most wait.
func fetchDoc(ctx context.Context, path, role, request string, wait time.Duration, v any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return nil, errNoClient
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("cannot ask the swarmvpn %s at %s: permission denied: run status as the user that runs the %s", role, path, role)
	case err != nil:
		return nil, fmt.Errorf("cannot ask the swarmvpn %s at %s: %w", role, path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	io.WriteString(c, request+"\n") // one too old to read it answers all the same
	raw, err := io.ReadAll(io.LimitReader(c, maxStatusSize))
	if err == nil {
		err = json.Unmarshal(raw, v)
	}
	if err != nil {
		return nil, fmt.Errorf("the swarmvpn %s at %s sent no status this command can read (%v): is it the same version?", role, path, err)
	}
	return raw, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name: "status",
		Usage: "show what the running client is doing: its exit, the link, the forwarded port, its proxies; " +
			"or, with no client running (or --exit), the running exit: its router mappings, public address and reachability",
		Flags: []cli.Flag{
			stringFlag("state-dir", "", "the running client's or exit's state `DIR` (default: swarmvpn under the user's config directory)"),
			&cli.BoolFlag{Name: "exit", Usage: "show the exit running with this state dir, even if a client runs there too"},
			&cli.BoolFlag{Name: "json", Usage: "print the status as one JSON document (counters only: no rates)"},
			&cli.DurationFlag{Name: "interval", Value: time.Second,
				Usage: "ask twice this far apart to show transfer rates (0: totals only)"},
			&cli.BoolFlag{Name: "check", Usage: "have the exit probe the forwarded port now (TCP and UDP, as a peer would), and show the result"},
		},
		Action: runStatus,
	}
}

func runStatus(ctx context.Context, cmd *cli.Command) error {
	dir, err := stateDir(cmd)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, client.ControlSocketName)
	if err := client.CheckControlPath(path); err != nil {
		return err
	}
	w := cmd.Root().Writer
	if cmd.Bool("exit") {
		return runExitStatus(ctx, cmd, dir, true)
	}
	var raw []byte
	var r client.Report
	if cmd.Bool("check") {
		raw, r, err = fetchRequest(ctx, path, client.RequestCheck, 30*time.Second)
	} else {
		raw, r, err = fetchStatus(ctx, path)
	}
	if errors.Is(err, errNoClient) {
		if err := runExitStatus(ctx, cmd, dir, false); !errors.Is(err, errNoClient) {
			return err
		}
		return fmt.Errorf("no swarmvpn client is running with state dir %s: start one with 'swarmvpn connect'", dir)
	}
	if err != nil {
		return err
	}
	if cmd.Bool("json") {
		_, err := fmt.Fprintf(w, "%s\n", bytes.TrimSpace(raw))
		return err
	}
	var prev *client.Traffic
	if d := cmd.Duration("interval"); d > 0 && r.Traffic != nil {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		prev = r.Traffic
		if _, r2, err := fetchStatus(ctx, path); err == nil {
			r = r2
		} else {
			prev = nil // the client went away: show what it said
		}
	}
	printStatus(w, r, prev, time.Now())
	return nil
}

// runExitStatus prints the status of the exit running with state dir dir.
// When none runs it returns errNoClient, or, if it was asked for
// explicitly, an error that says so.
func runExitStatus(ctx context.Context, cmd *cli.Command, dir string, asked bool) error {
	path := filepath.Join(dir, exitControlName)
	if err := control.CheckPath(path); err != nil {
		return err
	}
	var s exitStatus
	raw, err := fetchDoc(ctx, path, "exit", control.RequestStatus, 5*time.Second, &s)
	if errors.Is(err, errNoClient) && asked {
		return fmt.Errorf("no swarmvpn exit is running with state dir %s: start one with 'swarmvpn exit'", dir)
	}
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if cmd.Bool("json") {
		_, err := fmt.Fprintf(w, "%s\n", bytes.TrimSpace(raw))
		return err
	}
	printExitStatus(w, s, time.Now())
	return nil
}

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
