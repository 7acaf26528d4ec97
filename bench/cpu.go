package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
)

// CPU per GiB: for the bulk and UDP workloads, the CPU time (user and
// system, from /proc/PID/stat) that a path's processes spend per GiB the
// round carried, taken just before and just after each measured round.
// A path's "client" is the process the application talks to (swarmvpn's
// client, ssh), its "exit" the process at the far end of that one's link
// (swarmvpn's exit, sshd).

// ProcSet names a proxy's processes, for CPU per GiB.
type ProcSet struct {
	Client []int // the process(es) that the application's flows reach
	Exit   []int // the process(es) at the other end of their link
}

// cpuProcs are the processes whose CPU a path's rounds measure, or why
// there are none.
type cpuProcs struct {
	ProcSet
	why     string // why nothing is measured on the path; "" when Client is set
	whyExit string // why the exit side is not measured, when Exit is empty
	note    string // what was found, for the path's line in the report
}

// cpuUnsupported says why CPU is not measured at all on this system, or "".
func cpuUnsupported() string {
	if runtime.GOOS != "linux" {
		return "not measured: CPU time is read from Linux's /proc, which " + runtime.GOOS + " has not"
	}
	return ""
}

// localCPU returns the processes of a path whose processes bench started.
func localCPU(client, exit *Proc, more ...*Proc) cpuProcs {
	if why := cpuUnsupported(); why != "" {
		return cpuProcs{why: why}
	}
	c := cpuProcs{ProcSet: ProcSet{Client: []int{client.PID}}}
	if exit == nil {
		c.whyExit = "not measured: the exit runs on another machine"
		return c
	}
	c.Exit = []int{exit.PID}
	for _, p := range more {
		c.Exit = append(c.Exit, p.PID)
	}
	return c
}

// proxyCPU returns the processes of a SOCKS5 proxy: those given, or those
// found from the sockets: the process listening on its address (client)
// and the processes at the other end of that process's established
// loopback connections (exit; for ssh -D, sshd's per-connection
// processes).
func proxyCPU(spec Path) cpuProcs {
	if why := cpuUnsupported(); why != "" {
		return cpuProcs{why: why}
	}
	if spec.PIDs != nil {
		c := cpuProcs{ProcSet: *spec.PIDs, note: "CPU of " + spec.PIDs.String() + " (as given)"}
		if len(c.Exit) == 0 {
			c.whyExit = "not measured: no far-side process given"
		}
		return c
	}
	hint := " (name its processes: --socks-pids " + spec.Name + "=PID[:PID])"
	ap, err := netip.ParseAddrPort(spec.SOCKS.Addr)
	if err != nil {
		return cpuProcs{why: "not measured: its address is not an IP and port of this machine" + hint}
	}
	t, err := readSocketTable()
	if err != nil {
		return cpuProcs{why: fmt.Sprintf("not measured: reading the sockets: %v%s", err, hint)}
	}
	client := t.listeners(ap)
	switch {
	case len(client) == 0:
		return cpuProcs{why: "not measured: no process of this machine that bench may see listens on " + spec.SOCKS.Addr + hint}
	case len(client) == 1 && client[0] == os.Getpid():
		return cpuProcs{why: "not measured: the proxy runs inside bench's own process"}
	}
	c := cpuProcs{ProcSet: ProcSet{Client: client, Exit: t.peers(client, ap.Port(), append(client, os.Getpid())...)}}
	if len(c.Exit) == 0 {
		c.whyExit = "not measured: no process at the other end of its loopback connections (its far side runs elsewhere?)" + hint
	}
	c.note = "CPU of " + c.String()
	return c
}

// String writes the set as "client 12 · exit 34, 35".
func (s ProcSet) String() string {
	list := func(pids []int) string {
		var b []string
		for _, p := range pids {
			b = append(b, fmt.Sprint(p))
		}
		return strings.Join(b, ", ")
	}
	out := "client " + list(s.Client)
	if len(s.Exit) > 0 {
		out += " · exit " + list(s.Exit)
	}
	return out
}

// addCPU adds the CPU per GiB figures to the bulk and UDP workloads of ws:
// client+exit for each, and the client and the exit apart for one bulk
// flow and for UDP.
func addCPU(ws []workload) []workload {
	out := make([]workload, 0, len(ws))
	for _, w := range ws {
		if (w.group == WorkBulk || w.group == WorkUDP) && len(w.figs) > 0 {
			id := w.figs[0].id
			apart := w.group == WorkUDP || strings.HasSuffix(id, "_1")
			w = withCPU(w, strings.TrimSuffix(id, "_rate"), w.title, apart)
		}
		out = append(out, w)
	}
	return out
}

// cpuUnit is the unit of the CPU figures.
const cpuUnit = "s/GiB"

// withCPU adds to w the CPU per GiB of each path's processes over its
// rounds: client+exit, and when apart each of them too. The round's bytes
// are those its flows or datagrams carried, counted at the application:
// every payload byte written and read, so an echoed byte counts twice (it
// crosses the path twice).
func withCPU(w workload, id, label string, apart bool) workload {
	base := len(w.figs)
	sum := func(p *path) string {
		if p.cpu.why != "" {
			return p.cpu.why
		}
		return p.cpu.whyExit
	}
	w.figs = append(w.figs, figSpec{id: id + "_cpu", label: label + ": CPU per GiB, client+exit", unit: cpuUnit, lower: true, applies: sum})
	if apart {
		w.figs = append(w.figs,
			figSpec{id: id + "_cpu_client", label: label + ": CPU per GiB, client", unit: cpuUnit, lower: true,
				applies: func(p *path) string { return p.cpu.why }},
			figSpec{id: id + "_cpu_exit", label: label + ": CPU per GiB, exit", unit: cpuUnit, lower: true, applies: sum})
	}
	n := len(w.figs) - base
	inner := w.run
	w.run = func(ctx context.Context, p *path) ([]float64, error) {
		if p.cpu.why != "" {
			v, err := inner(ctx, p)
			return append(v, nans(n)...), err
		}
		var carried atomic.Int64
		counted := *p // the same path, its flows counted
		counted.dial = countingDial(p.dial, &carried)
		counted.udp = countingUDP(p.udp, &carried)
		c0, e0, err := p.cpu.sample()
		if err != nil {
			return nil, err
		}
		v, err := inner(ctx, &counted)
		if err != nil {
			return nil, err
		}
		c1, e1, err := p.cpu.sample()
		if err != nil {
			return nil, err
		}
		gib := float64(carried.Load()) / (1 << 30)
		if gib <= 0 {
			return nil, errors.New("the round carried no bytes")
		}
		client, exit := (c1-c0)/gib, (e1-e0)/gib
		if len(p.cpu.Exit) == 0 {
			exit = math.NaN()
		}
		v = append(v, client+exit)
		if apart {
			v = append(v, client, exit)
		}
		return v, nil
	}
	return w
}

// sample returns the CPU seconds the client and the exit processes have
// used so far.
func (c cpuProcs) sample() (client, exit float64, err error) {
	if client, err = cpuSeconds(c.Client); err != nil {
		return 0, 0, err
	}
	exit, err = cpuSeconds(c.Exit)
	return client, exit, err
}

func nans(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = math.NaN()
	}
	return v
}

// countingDial wraps dial so that every byte its flows read or write is
// added to n.
func countingDial(dial dialFunc, n *atomic.Int64) dialFunc {
	if dial == nil {
		return nil
	}
	return func(ctx context.Context, target string) (net.Conn, error) {
		c, err := dial(ctx, target)
		if err != nil {
			return nil, err
		}
		return countedConn{c, n}, nil
	}
}

// countedConn counts the bytes a flow carries, and half-closes like the
// flow it wraps.
type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countedConn) Read(b []byte) (int, error) {
	r, err := c.Conn.Read(b)
	c.n.Add(int64(r))
	return r, err
}

func (c countedConn) Write(b []byte) (int, error) {
	w, err := c.Conn.Write(b)
	c.n.Add(int64(w))
	return w, err
}

func (c countedConn) CloseWrite() error { return closeWrite(c.Conn) }

// countingUDP wraps open so that the payload of every datagram its
// associations send or receive is added to n.
func countingUDP(open func(context.Context) (packetPath, error), n *atomic.Int64) func(context.Context) (packetPath, error) {
	if open == nil {
		return nil
	}
	return func(ctx context.Context) (packetPath, error) {
		pc, err := open(ctx)
		if err != nil {
			return nil, err
		}
		return countedPackets{pc, n}, nil
	}
}

type countedPackets struct {
	packetPath
	n *atomic.Int64
}

func (c countedPackets) Send(p []byte) error {
	err := c.packetPath.Send(p)
	if err == nil {
		c.n.Add(int64(len(p)))
	}
	return err
}

func (c countedPackets) Recv(buf []byte) ([]byte, error) {
	p, err := c.packetPath.Recv(buf)
	c.n.Add(int64(len(p)))
	return p, err
}

func (c countedPackets) SetReadDeadline(t time.Time) error { return c.packetPath.SetReadDeadline(t) }

// validate checks that a set given has a client and only possible PIDs.
func (s *ProcSet) validate() error {
	if s == nil {
		return nil
	}
	if len(s.Client) == 0 {
		return errors.New("processes to measure: no client-side PID")
	}
	for _, pid := range append(s.Client[:len(s.Client):len(s.Client)], s.Exit...) {
		if pid < 1 {
			return fmt.Errorf("process ID %d: want a positive number", pid)
		}
	}
	return nil
}
