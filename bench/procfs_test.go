package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name, stat string
		want       int64
		wantErr    bool
	}{
		{"plain", "42 (swarmvpn) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 100 0 0", 325, false},
		{"spaces and parentheses in the name", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 9 9 20 0 1 0 5", 7, false},
		{"children's time is not ours", "7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 500 600 20 0 1 0 5", 0, false},
		{"too short", "7 (x) S 1 7 7 0 -1 0 0 0 0 0 3", 0, true},
		{"no name", "7 x S 1 7 7 0 -1 0 0 0 0 0 3 4 0 0", 0, true},
		{"not a number", "7 (x) S 1 7 7 0 -1 0 0 0 0 0 3 y 0 0", 0, true},
		{"negative", "7 (x) S 1 7 7 0 -1 0 0 0 0 0 -3 4 0 0", 0, true},
		{"sum past int64", "7 (x) S 1 7 7 0 -1 0 0 0 0 0 9223372036854775807 1 0 0", 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatCPU(%q) = %d, %v; want %d, error %v", tt.stat, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseHexAddrPort(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"0100007F:1F90", "127.0.0.1:8080", false},
		{"00000000:0050", "0.0.0.0:80", false},
		{"00000000000000000000000001000000:0438", "[::1]:1080", false},
		{"0000000000000000FFFF00000100007F:0438", "127.0.0.1:1080", false}, // IPv4-mapped
		{"0100007F", "", true},
		{"0100007:1F90", "", true},
		{"0100007F:1F9G", "", true},
		{"0100007F:10000", "", true},
	}
	for _, tt := range tests {
		got, err := parseHexAddrPort(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got.String() != tt.want) {
			t.Errorf("parseHexAddrPort(%q) = %v, %v; want %s, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// The helper process of TestSocketOwners: a stand-in for ssh -D. It
// listens (its SOCKS5 port) and holds a connection to the address in
// procfsHelperDial (its sshd); it prints its listening address, then
// closes the connection when it reads a line and ends at the end of its
// input.
const procfsHelperDial = "BENCH_PROCFS_HELPER_DIAL"

func TestProcfsHelper(t *testing.T) {
	to := os.Getenv(procfsHelperDial)
	if to == "" {
		t.Skip("the helper process of TestSocketOwners")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	up, err := net.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	fmt.Println(ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		up.Close()
		fmt.Println("closed")
	}
}

// TestSocketOwners finds, from /proc, the process listening on an address
// and the process at the other end of its loopback connection: a helper
// process listens and connects to this one, as ssh -D does to sshd.
func TestSocketOwners(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/net/tcp is Linux's")
	}
	self := os.Getpid()
	// This process as "sshd": it accepts the helper's connection.
	far, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := far.Accept()
		if err == nil {
			accepted <- c
		}
	}()

	cmd := exec.Command(os.Args[0], "-test.run=^TestProcfsHelper$")
	cmd.Env = append(os.Environ(), procfsHelperDial+"="+far.Addr().String())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	out := bufio.NewScanner(stdout)
	if !out.Scan() {
		t.Fatal("the helper printed nothing")
	}
	proxy, err := netip.ParseAddrPort(strings.TrimSpace(out.Text()))
	if err != nil {
		t.Fatalf("the helper printed %q: %v", out.Text(), err)
	}
	var up net.Conn
	select {
	case up = <-accepted:
		defer up.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the helper did not connect")
	}
	// A flow to the "proxy", as bench opens: not its link.
	flow, err := net.Dial("tcp", proxy.String())
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Close()

	helper := cmd.Process.Pid
	tab := readTable(t)
	if got := tab.listeners(proxy); !slices.Equal(got, []int{helper}) {
		t.Errorf("listening on %v: %v, want the helper [%d]", proxy, got, helper)
	}
	if got := tab.listeners(netip.MustParseAddrPort(far.Addr().String())); !slices.Equal(got, []int{self}) {
		t.Errorf("listening on %v: %v, want this process [%d]", far.Addr(), got, self)
	}
	if got := tab.peers([]int{helper}, proxy.Port(), helper); !slices.Equal(got, []int{self}) {
		t.Errorf("at the other end of the helper's link: %v, want this process [%d]", got, self)
	}
	if got := tab.peers([]int{helper}, proxy.Port(), helper, self); len(got) != 0 {
		t.Errorf("at the other end of the helper's link, leaving this process out: %v, want none", got)
	}
	if got := tab.peers([]int{self}, 0); !slices.Contains(got, helper) {
		t.Errorf("at the other end of this process's connections: %v, want the helper %d among them", got, helper)
	}
	// As bench finds a proxy's processes: bench itself (here the far
	// side) is never measured.
	c := proxyCPU(Path{Name: "helper", Kind: Proxy, SOCKS: SOCKS5{Addr: proxy.String()}})
	if !slices.Equal(c.Client, []int{helper}) || len(c.Exit) != 0 || c.whyExit == "" || c.why != "" {
		t.Errorf("proxyCPU: %+v, want client [%d], no exit and why", c, helper)
	}

	// Once the helper's link is closed, only the flow to its SOCKS5 port
	// joins it to this process: that is no link, so no far side.
	fmt.Fprintln(stdin, "close")
	if !out.Scan() || out.Text() != "closed" {
		t.Fatalf("the helper did not close its link: %q", out.Text())
	}
	io.Copy(io.Discard, up) // until the helper's FIN
	up.Close()
	tab = readTable(t)
	if got := tab.peers([]int{helper}, proxy.Port(), helper); len(got) != 0 {
		t.Errorf("the helper's link is closed, yet its far side is %v", got)
	}
	if got := tab.listeners(proxy); !slices.Equal(got, []int{helper}) {
		t.Errorf("listening on %v: %v, want the helper [%d]", proxy, got, helper)
	}
}

func readTable(t *testing.T) *socketTable {
	t.Helper()
	tab, err := readSocketTable()
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// FuzzParseStatCPU: a process names itself (the command in
// /proc/PID/stat), so the line is partly anyone's.
func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("42 (swarmvpn) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 100 0 0"))
	f.Add([]byte("7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 3 4 9 9"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := parseStatCPU(b); err == nil && v < 0 {
			t.Errorf("negative CPU time %d", v)
		}
	})
}

func FuzzParseNetTCP(f *testing.F) {
	f.Add([]byte("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:0438 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0 100 0 0 10 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range parseNetTCP(b) {
			if !s.local.IsValid() || !s.remote.IsValid() {
				t.Errorf("invalid address in %+v", s)
			}
		}
	})
}
