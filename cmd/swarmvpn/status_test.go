package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"
)

var testReport = client.Report{
	Peer:           "peerclient",
	Exit:           "peerexit@203.0.113.7:7000",
	Link:           "up",
	Since:          time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	RTT:            "23ms",
	SOCKS:          "127.0.0.1:1080",
	HTTP:           "127.0.0.1:8118",
	ForwardedPort:  51413,
	PublicEndpoint: "203.0.113.7:51413",
}

// runApp runs the whole app in-process and returns what it printed.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	err := app.Run(t.Context(), append([]string{"swarmvpn"}, args...))
	return out.String(), err
}

// startControl serves report on dir's control socket until the test ends.
func startControl(t *testing.T, dir string, report client.Report) {
	t.Helper()
	ln, err := client.ListenControl(filepath.Join(dir, client.ControlSocketName))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.ServeControl(ctx, ln, func() client.Report { return report }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeControl: %v", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, client.ControlSocketName)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("control socket left behind: %v", err)
		}
	})
}

// serveControl opens the control socket at path and serves report on it
// until ctx ends, as a running client does.
func serveControl(ctx context.Context, path string, report func() client.Report) error {
	ln, err := client.ListenControl(path)
	if err != nil {
		return err
	}
	return client.ServeControl(ctx, ln, report)
}

func TestStatusCommand(t *testing.T) {
	dir := t.TempDir()
	startControl(t, dir, testReport)

	fi, err := os.Lstat(filepath.Join(dir, client.ControlSocketName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v (%v), want 0600", fi.Mode(), err)
	}

	out, err := runApp(t, "status", "--state-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"exit     peerexit@203.0.113.7:7000\n",
		"link     up since ",
		"rtt      23ms\n",
		"port     51413, reachable at 203.0.113.7:51413\n",
		"socks    127.0.0.1:1080\n",
		"http     127.0.0.1:8118\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}

	out, err = runApp(t, "status", "--state-dir", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got client.Report
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if !got.Since.Equal(testReport.Since) {
		t.Fatalf("since %v, want %v", got.Since, testReport.Since)
	}
	got.Since = testReport.Since
	if !reflect.DeepEqual(got, testReport) {
		t.Fatalf("--json:\n got %+v\nwant %+v", got, testReport)
	}

	t.Setenv("SWARMVPN_STATE_DIR", dir)
	if out, err := runApp(t, "status"); err != nil || !strings.Contains(out, "peerexit@") {
		t.Fatalf("with SWARMVPN_STATE_DIR: %q, %v", out, err)
	}
}

func TestPrintStatus(t *testing.T) {
	since := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	printStatus(&b, client.Report{Exit: "e@h:1", Link: "down", Since: since, LastError: "link to h:1: connection refused",
		SOCKS: "127.0.0.1:1080"}, nil, since.Add(90*time.Second))
	want := "exit     e@h:1\n" +
		"link     down since " + since.Local().Format(time.DateTime) + " (1m30s)\n" +
		"error    link to h:1: connection refused\n" +
		"port     none forwarded\n" +
		"socks    127.0.0.1:1080\n" +
		"http     off\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestPrintStatusForwardRefused: the reason the exit lent no port is shown.
func TestPrintStatusForwardRefused(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, client.Report{Exit: "e@h:1", Link: "up", SOCKS: "127.0.0.1:1080",
		ForwardError: "the exit lent no port: no forwarded port free at the exit"}, nil, time.Now())
	if want := "port     none forwarded: the exit lent no port: no forwarded port free at the exit\n"; !strings.Contains(b.String(), want) {
		t.Fatalf("got\n%s\nwant a line %q", b.String(), want)
	}
}

func TestStatusNoClient(t *testing.T) {
	dir := t.TempDir()
	want := "no swarmvpn client is running with state dir " + dir + ": start one with 'swarmvpn connect'"
	if _, err := runApp(t, "status", "--state-dir", dir); err == nil || err.Error() != want {
		t.Fatalf("no socket: %v\nwant %s", err, want)
	}
	staleSocket(t, filepath.Join(dir, client.ControlSocketName))
	if _, err := runApp(t, "status", "--state-dir", dir); err == nil || err.Error() != want {
		t.Fatalf("stale socket: %v\nwant %s", err, want)
	}
}

// staleSocket leaves a socket at path that nobody answers on, as a client
// that was killed does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

// TestServeControlStale: a socket left by a dead client is replaced.
func TestServeControlStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, client.ControlSocketName)
	staleSocket(t, path)
	startControl(t, dir, testReport)
	if out, err := runApp(t, "status", "--state-dir", dir); err != nil || !strings.Contains(out, "peerexit@") {
		t.Fatalf("status after a stale socket: %q, %v", out, err)
	}

	// serveControl itself: with ctx already done it replaces the stale
	// socket, stops at once and removes its own.
	dir2 := t.TempDir()
	path2 := filepath.Join(dir2, client.ControlSocketName)
	staleSocket(t, path2)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := serveControl(ctx, path2, func() client.Report { return testReport }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path2); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left after serveControl returned: %v", err)
	}
}

// TestServeControlLive: a second client with the same state dir is refused
// and the first keeps its socket.
func TestServeControlLive(t *testing.T) {
	dir := t.TempDir()
	startControl(t, dir, testReport)
	err := serveControl(t.Context(), filepath.Join(dir, client.ControlSocketName), func() client.Report { return client.Report{} })
	if err == nil || !strings.Contains(err.Error(), "another swarmvpn client is running with state dir "+dir) {
		t.Fatalf("second serveControl: %v", err)
	}
	if out, err := runApp(t, "status", "--state-dir", dir); err != nil || !strings.Contains(out, "peerexit@") {
		t.Fatalf("the first client stopped answering: %q, %v", out, err)
	}
}

func TestServeControlBadPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, client.ControlSocketName)
	os.WriteFile(path, []byte("not a socket"), 0o600)
	err := serveControl(t.Context(), path, func() client.Report { return testReport })
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("a regular file in the way: %v", err)
	}

	long := filepath.Join(dir, strings.Repeat("d", 120))
	err = serveControl(t.Context(), filepath.Join(long, client.ControlSocketName), func() client.Report { return testReport })
	if err == nil || !strings.Contains(err.Error(), "use a shorter --state-dir") {
		t.Fatalf("too long a path: %v", err)
	}
	if _, err := runApp(t, "status", "--state-dir", long); err == nil || !strings.Contains(err.Error(), "use a shorter --state-dir") {
		t.Fatalf("status with too long a path: %v", err)
	}
	if _, err := os.Stat(long); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the long state dir was created: %v", err)
	}
}

// TestStatusRates serves a client whose counters grow between two
// requests, and checks the rates status derives from their timestamps.
func TestStatusRates(t *testing.T) {
	dir := t.TempDir()
	ln, err := client.ListenControl(filepath.Join(dir, client.ControlSocketName))
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var asked atomic.Int64
	report := func() client.Report {
		n := asked.Add(1) // 1, 2: one second and 1 MiB in, 1 KiB out apart
		r := testReport
		r.Traffic = &client.Traffic{At: base.Add(time.Duration(n) * time.Second), FlowsOpen: 2, Flows: 9,
			BytesIn: uint64(n) << 20, BytesOut: uint64(n) << 10}
		return r
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.ServeControl(ctx, ln, report) }()
	t.Cleanup(func() { cancel(); <-done })

	out, err := runApp(t, "status", "--state-dir", dir, "--interval", "10ms")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"flows    2 open, 9 since start\n",
		"traffic  in 2.0 MiB (1.0 MiB/s), out 2.0 KiB (1.0 KiB/s)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if n := asked.Load(); n != 2 {
		t.Errorf("status asked %d times, want 2", n)
	}

	out, err = runApp(t, "status", "--state-dir", dir, "--interval", "0")
	if err != nil || !strings.Contains(out, "traffic  in 3.0 MiB, out 3.0 KiB\n") {
		t.Errorf("--interval 0: %v, output:\n%s", err, out)
	}
	out, err = runApp(t, "status", "--state-dir", dir, "--json")
	var got client.Report
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Traffic == nil || got.Traffic.BytesIn != 4<<20 {
		t.Errorf("--json: %v, %q", err, out)
	}
	if n := asked.Load(); n != 4 {
		t.Errorf("status asked %d times in all, want 4 (one each for --interval 0 and --json)", n)
	}
}

func TestRatesAndSizes(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	a := &client.Traffic{At: at, BytesIn: 1000, BytesOut: 10}
	for _, tt := range []struct {
		name    string
		b       *client.Traffic
		in, out uint64
		ok      bool
	}{
		{"two seconds", &client.Traffic{At: at.Add(2 * time.Second), BytesIn: 5000, BytesOut: 10}, 2000, 0, true},
		{"same instant", &client.Traffic{At: at, BytesIn: 5000}, 0, 0, false},
		{"restarted", &client.Traffic{At: at.Add(time.Second), BytesIn: 10, BytesOut: 10}, 0, 0, false},
	} {
		in, out, ok := rates(a, tt.b)
		if in != tt.in || out != tt.out || ok != tt.ok {
			t.Errorf("%s: rates %d, %d, %v; want %d, %d, %v", tt.name, in, out, ok, tt.in, tt.out, tt.ok)
		}
	}
	if _, _, ok := rates(nil, a); ok {
		t.Error("rates with no earlier report")
	}
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		5 << 30: "5.0 GiB", 1<<64 - 1: "16.0 EiB"} {
		if got := sizeOf(n); got != want {
			t.Errorf("sizeOf(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPrintStatusForward(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	printStatus(&b, client.Report{Exit: "e@h:1", Link: "up", ForwardedPort: 40001, PublicEndpoint: "h:40001",
		InboundTCP: "refusing",
		Reachability: &client.Reachability{Port: 40001, Reachable: true, Checked: now.Add(-2 * time.Minute),
			TCP: "closed (the local target accepts no TCP)", UDP: "answered"},
		Announces: &client.AnnounceReport{HTTP: 3, UDP: 2, PortRewrites: 5, AddrStrips: 1},
		SOCKS:     "127.0.0.1:1080"}, nil, now)
	for _, want := range []string{
		"port     40001, reachable at h:40001\n",
		"tcp      refused at the exit: the local target accepts no TCP (peers connect by uTP)\n",
		"reach    port 40001 reachable (tcp closed (the local target accepts no TCP), udp answered; checked 2m0s ago)\n",
		"announce 3 HTTP, 2 UDP seen; 5 ports rewritten, 1 addresses removed, 0 malformed\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no line %q in\n%s", want, b.String())
		}
	}
}

// TestStatusCheck: 'status --check' has the client probe before it reports;
// plain 'status' does not.
func TestStatusCheck(t *testing.T) {
	dir := t.TempDir()
	ln, err := client.ListenControl(filepath.Join(dir, client.ControlSocketName))
	if err != nil {
		t.Fatal(err)
	}
	var checks atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- client.ServeControlWith(ctx, ln, func() client.Report {
			r := testReport
			if n := checks.Load(); n > 0 {
				r.Reachability = &client.Reachability{Port: 40001, Reachable: true, Checked: time.Now()}
			}
			return r
		}, func(context.Context) { checks.Add(1) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	if out, err := runApp(t, "status", "--state-dir", dir, "--json"); err != nil || strings.Contains(out, "reachability") || checks.Load() != 0 {
		t.Fatalf("status: %q, %v, %d checks", out, err, checks.Load())
	}
	out, err := runApp(t, "status", "--state-dir", dir, "--json", "--check")
	if err != nil || !strings.Contains(out, `"reachable":true`) || checks.Load() != 1 {
		t.Fatalf("status --check: %q, %v, %d checks", out, err, checks.Load())
	}
}
