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
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
)

// statusReport is what a running client tells `swarmvpn status`.
type statusReport struct {
	Peer           string         `json:"peer"`
	Exit           string         `json:"exit"` // PEERID@HOST:PORT
	Link           string         `json:"link"` // connecting, up, down
	Since          time.Time      `json:"since"`
	RTT            string         `json:"rtt,omitempty"`
	LastError      string         `json:"last_error,omitempty"`
	SOCKS          string         `json:"socks"`
	HTTP           string         `json:"http,omitempty"`
	ForwardedPort  uint16         `json:"forwarded_port,omitempty"`
	PublicEndpoint string         `json:"public_endpoint,omitempty"` // exit host:forwarded port
	Traffic        *trafficReport `json:"traffic,omitempty"`
	Exits          []exitReport   `json:"exits,omitempty"` // every exit the client knows
}

// trafficReport is what the client has carried since it started, read at
// one instant: two reports a moment apart give the rates. Bytes are
// payload, counted as they pass.
type trafficReport struct {
	At        time.Time `json:"at"`
	FlowsOpen int64     `json:"flows_open"`
	Flows     uint64    `json:"flows"`     // opened since start: TCP, UDP associations, inbound
	BytesIn   uint64    `json:"bytes_in"`  // from the internet
	BytesOut  uint64    `json:"bytes_out"` // to the internet
}

// exitReport is one known exit, for `swarmvpn peers`.
type exitReport struct {
	Exit      string   `json:"exit"` // PEERID@HOST:PORT
	Source    string   `json:"source"`
	Role      string   `json:"role,omitempty"` // active, standby
	RTT       string   `json:"rtt,omitempty"`
	Caps      []string `json:"caps,omitempty"`
	Load      float64  `json:"load"`
	Age       string   `json:"age"`
	LastError string   `json:"last_error,omitempty"`
}

// controlSocketName is the control socket's name in the state dir.
const controlSocketName = "control.sock"

// maxStatusSize bounds a status document.
const maxStatusSize = 1 << 20

// maxSocketPath is the longest path a unix socket may have: sun_path is 108
// bytes on Linux and 104 elsewhere, a terminating NUL included.
func maxSocketPath() int {
	if runtime.GOOS == "linux" {
		return 107
	}
	return 103
}

func checkSocketPath(path string) error {
	if limit := maxSocketPath(); len(path) > limit {
		return fmt.Errorf("the control socket path %s is %d bytes, longer than the %d a unix socket allows: use a shorter --state-dir",
			path, len(path), limit)
	}
	return nil
}

// serveControl answers status requests on a unix socket at path (mode
// 0600) until ctx ends, then removes the socket. A socket left by a dead
// client is replaced; one a live client answers on is an error. Each
// connection gets one JSON document, report(), and is closed. It returns
// after all its goroutines have ended.
func serveControl(ctx context.Context, path string, report func() statusReport) error {
	ln, err := listenControl(path)
	if err != nil {
		return err
	}
	return serveControlOn(ctx, ln, report)
}

// listenControl opens the control socket, so that a caller can open every
// listener before it starts anything. Closing the listener removes the
// socket.
func listenControl(path string) (*net.UnixListener, error) {
	if err := checkSocketPath(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the state dir for the control socket: %w", err)
	}
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		if err := removeStaleSocket(path); err != nil {
			return nil, err
		}
		ln, err = net.ListenUnix("unix", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot listen on the control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("cannot make the control socket %s private: %w", path, err)
	}
	return ln, nil
}

// removeStaleSocket removes the socket at path if no process answers on it.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("cannot listen on the control socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("cannot listen on the control socket %s: a file that is not a socket is in the way: remove it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("another swarmvpn client is running with state dir %s (it answers on %s): stop it first, or give this one another --state-dir",
			filepath.Dir(path), path)
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot tell whether a running swarmvpn client owns %s (%v): remove it if none is running", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot remove the stale control socket %s: %w", path, err)
	}
	return nil
}

// serveControlOn is serveControl on a listener listenControl opened; it
// closes ln.
func serveControlOn(ctx context.Context, ln net.Listener, report func() statusReport) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			ln.Close()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		wg.Go(func() { answerStatus(ctx, c, report) })
	}
}

func answerStatus(ctx context.Context, c net.Conn, report func() statusReport) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	json.NewEncoder(c).Encode(report()) // a reader that went away needs no answer
}

// errNoClient: nothing answers on the control socket.
var errNoClient = errors.New("no client")

// fetchStatus asks the client on the control socket at path for its status,
// returning the document as sent and as read.
func fetchStatus(ctx context.Context, path string) ([]byte, statusReport, error) {
	var r statusReport
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return nil, r, errNoClient
	case errors.Is(err, fs.ErrPermission):
		return nil, r, fmt.Errorf("cannot ask the swarmvpn client at %s: permission denied: run status as the user that runs the client", path)
	case err != nil:
		return nil, r, fmt.Errorf("cannot ask the swarmvpn client at %s: %w", path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	raw, err := io.ReadAll(io.LimitReader(c, maxStatusSize))
	if err == nil {
		err = json.Unmarshal(raw, &r)
	}
	if err != nil {
		return nil, r, fmt.Errorf("the swarmvpn client at %s sent no status this command can read (%v): is it the same version?", path, err)
	}
	return raw, r, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show what the running client is doing: its exit, the link, the forwarded port, its proxies",
		Flags: []cli.Flag{
			stringFlag("state-dir", "", "the running client's state `DIR` (default: swarmvpn under the user's config directory)"),
			&cli.BoolFlag{Name: "json", Usage: "print the status as one JSON document (counters only: no rates)"},
			&cli.DurationFlag{Name: "interval", Value: time.Second,
				Usage: "ask twice this far apart to show transfer rates (0: totals only)"},
		},
		Action: runStatus,
	}
}

func runStatus(ctx context.Context, cmd *cli.Command) error {
	dir, err := stateDir(cmd)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, controlSocketName)
	if err := checkSocketPath(path); err != nil {
		return err
	}
	raw, r, err := fetchStatus(ctx, path)
	if errors.Is(err, errNoClient) {
		return fmt.Errorf("no swarmvpn client is running with state dir %s: start one with 'swarmvpn connect'", dir)
	}
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if cmd.Bool("json") {
		_, err := fmt.Fprintf(w, "%s\n", bytes.TrimSpace(raw))
		return err
	}
	var prev *trafficReport
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

// printStatus writes r as aligned lines for a person, with rates since
// prev when it is an earlier report of the same client.
func printStatus(w io.Writer, r statusReport, prev *trafficReport, now time.Time) {
	line := func(label, value string) { fmt.Fprintf(w, "%-8s %s\n", label, value) }
	or := func(s, dflt string) string {
		if s == "" {
			return dflt
		}
		return s
	}
	line("exit", or(r.Exit, "none"))
	link := or(r.Link, "unknown")
	if !r.Since.IsZero() {
		link += fmt.Sprintf(" since %s (%s)", r.Since.Local().Format(time.DateTime), now.Sub(r.Since).Round(time.Second))
	}
	line("link", link)
	if r.RTT != "" {
		line("rtt", r.RTT)
	}
	if r.LastError != "" {
		line("error", r.LastError)
	}
	switch {
	case r.ForwardedPort == 0:
		line("port", "none forwarded")
	case r.PublicEndpoint != "":
		line("port", fmt.Sprintf("%d, reachable at %s", r.ForwardedPort, r.PublicEndpoint))
	default:
		line("port", fmt.Sprint(r.ForwardedPort))
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
	line("socks", or(r.SOCKS, "off"))
	line("http", or(r.HTTP, "off"))
	if r.Peer != "" {
		line("peer", r.Peer)
	}
}

// rates returns the bytes per second in and out between two reports, and
// false when they do not make a pair: no earlier one, no time between
// them, or counters that went back (the client restarted).
func rates(a, b *trafficReport) (in, out uint64, ok bool) {
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
