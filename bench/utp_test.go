package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

// requireLibtorrent skips the test where python3-libtorrent is missing,
// except in CI, which installs it: there a missing package is a failure.
func requireLibtorrent(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("real torrent clients are skipped with -short")
	}
	python := UTPConfig{}.withDefaults(false).Python
	if err := exec.Command(python, "-c", "import libtorrent").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-libtorrent is not importable under %s (%v); .ci/run installs it", python, err)
		}
		t.Skipf("python3-libtorrent not installed (apt-get install python3-libtorrent): %v", err)
	}
}

// TestUTPWorkload moves a small torrent over uTP through swarmvpn (in this
// process) and directly, and checks that each path has a figure, that the
// tunnel's leecher got its bytes through the exit's UDP relay, and that
// nothing is left behind.
func TestUTPWorkload(t *testing.T) {
	requireLibtorrent(t)
	tp := testnet.Start(t, testnet.Options{})
	const size = 8 << 20
	var details []string
	b, err := New(Config{
		Paths: []Path{
			{Name: "tunnel", Kind: Proxy, SOCKS: SOCKS5{Addr: tp.SOCKS}},
			{Name: "direct", Kind: Direct},
		},
		Workloads: []string{WorkUTP}, Rounds: 1, Warmup: -1,
		UTP: UTPConfig{Size: size, Timeout: 60 * time.Second},
		Progress: func(s Status) {
			if s.Detail != "" {
				details = append(details, s.Detail)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	before := tempDirs(t)
	rep, err := b.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f := rep.Figure("utp")
	if f == nil || len(rep.Figures) != 3 || rep.Figure("utp_loss") == nil || rep.Figure("utp_timeouts") == nil {
		t.Fatalf("figures %+v, want utp, utp_loss and utp_timeouts", rep.Figures)
	}
	for _, id := range []string{"utp_loss", "utp_timeouts"} {
		for _, r := range rep.Figure(id).Results {
			if r.Error != "" || len(r.Rounds) != 1 || r.Value < 0 {
				t.Errorf("%s on %s: %+v", id, r.Path, r)
			}
		}
	}
	if !strings.Contains(f.Label, "8 MiB") {
		t.Errorf("label %q does not name the size", f.Label)
	}
	for _, r := range f.Results {
		if r.Error != "" || len(r.Rounds) != 1 || r.Value <= 0 {
			t.Errorf("%s: %+v", r.Path, r)
		}
	}
	if f.Results[1].Ratio == 0 {
		t.Error("no ratio for the direct path")
	}
	if got := tp.Exit.Stats().UDP.BytesIn; got < size {
		t.Errorf("the exit relayed %d bytes of UDP to its client, less than the %d-byte payload: the tunnel's leecher did not use it", got, size)
	}
	for _, n := range rep.Notes {
		if strings.Contains(n, "seeders") && !strings.HasPrefix(n, "uTP torrent:") {
			t.Errorf("note: %s; want both seeders to send data on each path", n)
		}
	}
	if len(details) == 0 {
		t.Error("no progress shown during the transfers")
	}
	if after := tempDirs(t); after > before {
		t.Errorf("%d of the workload's temporary directories left behind", after-before)
	}
}

// TestUTPTimeout: a transfer that does not complete in time is an error in
// the report, not a hang or a failed run.
func TestUTPTimeout(t *testing.T) {
	requireLibtorrent(t)
	b, err := New(Config{
		Paths:     []Path{{Name: "direct", Kind: Direct}},
		Workloads: []string{WorkUTP}, Rounds: 1, Warmup: -1,
		UTP: UTPConfig{Size: 1 << 20, Timeout: time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := b.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Figure("utp").Results[0]; !strings.Contains(r.Error, "not complete after 1ms") {
		t.Fatalf("result %+v, want a timeout", r)
	}
}

// TestUTPWithoutLibtorrent: without libtorrent the workload is not
// measured, and the report says how to install it.
func TestUTPWithoutLibtorrent(t *testing.T) {
	b, err := New(Config{
		Paths:     []Path{{Name: "direct", Kind: Direct}},
		Workloads: []string{WorkUTP},
		UTP:       UTPConfig{Python: filepath.Join(t.TempDir(), "no-python")},
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := b.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Figure("utp").Results[0]
	if !strings.Contains(r.Error, "not measured") || !strings.Contains(r.Error, "apt-get install python3-libtorrent") {
		t.Fatalf("result %+v, want it not measured with how to install libtorrent", r)
	}
}

// TestUTPVerify: the check of the leecher's data finds a changed byte and
// a short file.
func TestUTPVerify(t *testing.T) {
	dir := t.TempDir()
	r := &utpRig{cfg: UTPConfig{Size: 3<<20 + 5}, seed: [32]byte{1, 2, 3}}
	file := filepath.Join(dir, payloadName)
	if err := writePayload(file, r.seed, r.cfg.Size); err != nil {
		t.Fatal(err)
	}
	if err := r.verify(file); err != nil {
		t.Fatalf("the payload itself: %v", err)
	}
	data, _ := os.ReadFile(file)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"a byte changed", append(append(append([]byte{}, data[:2<<20+7]...), data[2<<20+7]^1), data[2<<20+8:]...), "offset 2097152"},
		{"short", data[:len(data)-1], "3145732 bytes"},
		{"long", append(append([]byte{}, data...), 0), "3145734 bytes"},
		{"other seed", nil, "offset 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), payloadName)
			if tt.data == nil {
				if err := writePayload(f, [32]byte{9}, r.cfg.Size); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(f, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := r.verify(f); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("verify: %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// tempDirs counts the uTP workload's directories in the temporary
// directory.
func tempDirs(t *testing.T) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "swarmvpn-bench-utp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}
