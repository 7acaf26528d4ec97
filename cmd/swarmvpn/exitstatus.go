package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/nat"
	"github.com/swarmvpn/swarmvpn/internal/control"
)

// exitControlName is the exit's control socket in its state dir (the
// client's is client.ControlSocketName: both may share a state dir).
const exitControlName = "exit.sock"

// checkNATMode checks --nat before anything listens.
func checkNATMode(cmd *cli.Command) error {
	if _, err := nat.New(nat.Config{Mode: cmd.String("nat")}); err != nil {
		return fmt.Errorf("--nat %q: want auto, upnp, natpmp or off", cmd.String("nat"))
	}
	return nil
}

// natRecordName is the file in the exit's state dir where the mapper
// records each mapping it makes, so that a start after a crash deletes what
// the crashed run left on the router.
const natRecordName = "nat-mappings.json"

// portMapper returns the mapper --nat asks for, or nil: with "off", and
// for a listener on loopback, which no router can forward to.
func portMapper(cmd *cli.Command, ln *net.TCPAddr, log *slog.Logger) (*nat.Mapper, error) {
	mode := strings.ToLower(cmd.String("nat"))
	if mode == nat.ModeOff {
		return nil, nil
	}
	if ln.IP.IsLoopback() {
		log.Info("not mapping ports on the router: the exit listens on loopback", "listen", ln.String())
		return nil, nil
	}
	dir, err := stateDir(cmd)
	if err != nil {
		return nil, err
	}
	m, err := nat.New(nat.Config{Mode: mode, Log: log, RecordPath: filepath.Join(dir, natRecordName)})
	if err != nil {
		return nil, fmt.Errorf("--nat: %w", err)
	}
	return m, nil
}

func natMode(m *nat.Mapper) string {
	if m == nil {
		return nat.ModeOff
	}
	return m.Status().Mode
}

// listenExitControl opens the exit's control socket in its state dir.
func listenExitControl(cmd *cli.Command) (net.Listener, error) {
	dir, err := stateDir(cmd)
	if err != nil {
		return nil, err
	}
	ln, err := control.Listen(filepath.Join(dir, exitControlName), "exit")
	if err != nil {
		return nil, err // a nil *net.UnixListener must not become a non-nil net.Listener
	}
	return ln, nil
}

// exitStatus is the document on the exit's control socket.
type exitStatus struct {
	Role string `json:"role"` // "exit"
	exit.Report
	NAT *nat.Status `json:"nat,omitempty"` // nil with --nat off
}

func newExitStatus(e *exit.Server, m *nat.Mapper) exitStatus {
	s := exitStatus{Role: "exit", Report: e.Report()}
	if m != nil {
		st := m.Status()
		s.NAT = &st
	}
	return s
}

// printExitStatus writes an exit's status as aligned lines for a person.
func printExitStatus(w io.Writer, s exitStatus, now time.Time) {
	line := func(label, value string) { fmt.Fprintf(w, "%-8s %s\n", label, value) }
	line("exit", s.Peer)
	for i, a := range s.Addrs {
		label := ""
		if i == 0 {
			label = "address"
		}
		line(label, s.Peer+"@"+a)
	}
	switch n := s.NAT; {
	case n == nil:
		line("nat", "off")
	default:
		v := n.Mode
		switch {
		case n.Method == "":
			v += ": no router that maps ports found (yet)"
		case n.Method == n.Mode:
			v = fmt.Sprintf("%s with the router %v", n.Method, n.Gateway)
		default:
			v += fmt.Sprintf(": %s with the router %v", n.Method, n.Gateway)
		}
		line("nat", v)
		switch {
		case n.External.IsValid():
			line("public", n.External.String())
		case n.DoubleNAT && n.Reported.IsValid():
			line("public", fmt.Sprintf("none: DOUBLE NAT (the router's own address, %v, is not a public one)", n.Reported))
		case n.DoubleNAT:
			line("public", "none: DOUBLE NAT (the router has no public address)")
		default:
			line("public", "unknown")
		}
		if n.Err != "" {
			line("problem", n.Err)
		}
		for _, m := range n.Mappings {
			v := fmt.Sprintf("%s %d -> %d", m.Proto, m.Internal, m.External)
			switch {
			case m.Active && m.Expires.IsZero():
				v += ", no expiry"
			case m.Active:
				v += fmt.Sprintf(", lease ends %s (in %s; renewed at half)", m.Expires.Local().Format(time.TimeOnly), m.Expires.Sub(now).Round(time.Second))
			default:
				v += ", NOT mapped"
			}
			if m.Err != "" {
				v += ": " + m.Err
			}
			line("mapping", v)
		}
	}
	r := s.Reach
	v := r.State
	if r.Addr != "" {
		v += " at " + r.Addr
	}
	if r.Method != "" {
		v += " (" + r.Method + ")"
	}
	if !r.At.IsZero() {
		v += ", checked " + r.At.Local().Format(time.TimeOnly)
	}
	line("reach", v)
	if r.Detail != "" {
		line("", r.Detail)
	}
	if r.Observed != "" {
		line("observed", r.Observed)
	}
	if s.Publish {
		line("publish", "yes")
	} else {
		line("publish", "no (not reachable from the internet)")
	}
	line("dht", exitDHTLine(s.DHT, now))
	st := s.Stats
	line("clients", fmt.Sprintf("%d (%d links); %d links accepted since start", st.Clients, st.Links, st.LinksAccepted))
	line("flows", fmt.Sprintf("%d open, %d refused by policy", st.FlowsOpen, st.PolicyRefusals))
	line("traffic", "in "+sizeOf(st.BytesIn)+", out "+sizeOf(st.BytesOut)+
		fmt.Sprintf("; udp in %s, out %s", sizeOf(st.UDP.BytesIn), sizeOf(st.UDP.BytesOut)))
	line("forward", fmt.Sprintf("%d open, %d inbound connections", st.Forward.Active, st.Forward.Inbound))
}

// exitDHTLine sums up the exit's presence on the DHT for 'status --exit'.
func exitDHTLine(d *exit.DHTReport, now time.Time) string {
	if d == nil {
		return "off"
	}
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	}
	v := fmt.Sprintf("%d nodes; ", d.Nodes)
	if d.Publishing {
		v += fmt.Sprintf("announcing port %d, last announce %s, last publish %s", d.Port, ago(d.LastAnnounce), ago(d.LastPublish))
		if d.Seq != 0 {
			v += fmt.Sprintf(" (seq %d)", d.Seq)
		}
	} else {
		v += "not publishing (not known to be reachable from the internet)"
		if !d.LastPublish.IsZero() {
			v += ", last publish " + ago(d.LastPublish)
		}
	}
	if d.Failures > 0 {
		v += fmt.Sprintf("; %d failed", d.Failures)
	}
	return v
}
