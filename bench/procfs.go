package bench

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// What bench reads from Linux's /proc: a process's CPU time, and which
// processes hold the sockets of a proxy.

// userHZ is the unit of the CPU times in /proc/PID/stat: Linux reports
// them to user space in clock ticks of 1/100 s (USER_HZ) on every
// architecture Go builds for.
const userHZ = 100

// parseStatCPU returns utime+stime, in clock ticks, from the content of
// /proc/PID/stat: the 14th and 15th fields, counted after the command name
// in parentheses (which may itself hold spaces and parentheses).
func parseStatCPU(b []byte) (int64, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is the 3rd field (state); utime and stime are the 14th and 15th.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("CPU time %q: not a count of ticks", s)
		}
		if v > math.MaxInt64-ticks {
			return 0, fmt.Errorf("CPU time %q: too large", s)
		}
		ticks += v
	}
	return ticks, nil
}

// cpuSeconds returns the CPU time (user and system, all threads) that the
// processes pids have used so far, in seconds.
func cpuSeconds(pids []int) (float64, error) {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("CPU time of process %d: %w", pid, err)
		}
		t, err := parseStatCPU(b)
		if err != nil {
			return 0, fmt.Errorf("CPU time of process %d: /proc/%d/stat: %w", pid, pid, err)
		}
		ticks += t
	}
	return float64(ticks) / userHZ, nil
}

// TCP socket states in /proc/net/tcp.
const (
	tcpEstablished = 0x01
	tcpListen      = 0x0A
)

// tcpSocket is one line of /proc/net/tcp or /proc/net/tcp6.
type tcpSocket struct {
	local, remote netip.AddrPort
	state         uint8
	inode         uint64
}

// parseNetTCP parses the content of /proc/net/tcp or /proc/net/tcp6. Lines
// it cannot read are skipped: the table is the kernel's, not a peer's.
func parseNetTCP(b []byte) []tcpSocket {
	var out []tcpSocket
	for i, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if i == 0 || len(f) < 10 {
			continue // the heading
		}
		local, err1 := parseHexAddrPort(f[1])
		remote, err2 := parseHexAddrPort(f[2])
		state, err3 := strconv.ParseUint(f[3], 16, 8)
		inode, err4 := strconv.ParseUint(f[9], 10, 64)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			continue
		}
		out = append(out, tcpSocket{local: local, remote: remote, state: uint8(state), inode: inode})
	}
	return out
}

// parseHexAddrPort parses an address as /proc/net/tcp{,6} writes it: the
// address as 32-bit words in the host's byte order, each in hex, then ':'
// and the port in hex.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q: no port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: port: %w", s, err)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q: want 8 or 32 hex digits", s)
	}
	// Each word was printed as a number: undo the host's byte order.
	for w := 0; w < len(raw); w += 4 {
		binary.NativeEndian.PutUint32(raw[w:], binary.BigEndian.Uint32(raw[w:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// socketTable is a snapshot of the machine's TCP sockets and of the
// processes that hold each.
type socketTable struct {
	sockets []tcpSocket
	owners  map[uint64][]int // socket inode → PIDs holding it
}

// readSocketTable reads the TCP sockets from /proc/net/tcp and tcp6 and
// their owners from the fd links of every process it may read (its own
// user's, or all as root).
func readSocketTable() (*socketTable, error) {
	t := &socketTable{owners: map[uint64][]int{}}
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && name == "/proc/net/tcp6" {
				continue // no IPv6
			}
			return nil, err
		}
		t.sockets = append(t.sockets, parseNetTCP(b)...)
	}
	fds, err := filepath.Glob("/proc/[0-9]*/fd/*")
	if err != nil {
		return nil, err
	}
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if err != nil {
			continue // gone, or not ours to read
		}
		rest, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		inode, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err != nil {
			continue
		}
		if !slices.Contains(t.owners[inode], pid) {
			t.owners[inode] = append(t.owners[inode], pid)
		}
	}
	return t, nil
}

// listeners returns the processes listening on addr: on that address and
// port, or on the port of every address.
func (t *socketTable) listeners(addr netip.AddrPort) []int {
	var pids []int
	for _, s := range t.sockets {
		if s.state != tcpListen || s.local.Port() != addr.Port() {
			continue
		}
		if s.local.Addr() == addr.Addr().Unmap() || s.local.Addr().IsUnspecified() {
			pids = appendNew(pids, t.owners[s.inode]...)
		}
	}
	return pids
}

// peers returns the processes at the other end of the established
// loopback connections of the processes pids, leaving out the connections
// on their port skip (the proxy's own, which its users open) and the
// processes in exclude.
func (t *socketTable) peers(pids []int, skip uint16, exclude ...int) []int {
	held := map[uint64]bool{}
	for inode, owners := range t.owners {
		for _, pid := range owners {
			if slices.Contains(pids, pid) {
				held[inode] = true
			}
		}
	}
	type pair struct{ local, remote netip.AddrPort }
	byEnds := map[pair]uint64{}
	for _, s := range t.sockets {
		if s.state == tcpEstablished {
			byEnds[pair{s.local, s.remote}] = s.inode
		}
	}
	var out []int
	for _, s := range t.sockets {
		if s.state != tcpEstablished || !held[s.inode] || s.local.Port() == skip || !s.remote.Addr().IsLoopback() {
			continue
		}
		other, ok := byEnds[pair{s.remote, s.local}]
		if !ok {
			continue
		}
		for _, pid := range t.owners[other] {
			if !slices.Contains(exclude, pid) {
				out = appendNew(out, pid)
			}
		}
	}
	slices.Sort(out)
	return out
}

// appendNew appends each of vs not in s yet.
func appendNew(s []int, vs ...int) []int {
	for _, v := range vs {
		if !slices.Contains(s, v) {
			s = append(s, v)
		}
	}
	return s
}
