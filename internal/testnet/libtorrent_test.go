package testnet

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// python is the interpreter Debian's python3-libtorrent is built for.
const python = "/usr/bin/python3"

// requireLibtorrent skips the test where python3-libtorrent is missing,
// except in CI, which installs it: there a missing package is a failure.
func requireLibtorrent(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("real torrent clients are skipped with -short")
	}
	if err := exec.Command(python, "-c", "import libtorrent").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-libtorrent is not importable under %s (%v); .ci/run installs it", python, err)
		}
		t.Skipf("python3-libtorrent not installed (apt-get install python3-libtorrent): %v", err)
	}
}

// ltPeer runs testdata/ltpeer.py; it exits when the test closes its stdin.
type ltPeer struct {
	cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan struct{}
}

func startLT(t *testing.T, args ...string) *ltPeer {
	t.Helper()
	p := &ltPeer{cmd: exec.Command(python, append([]string{"testdata/ltpeer.py"}, args...)...),
		lines: make(chan string, 1024), done: make(chan struct{})}
	stdin, _ := p.cmd.StdinPipe()
	stdout, _ := p.cmd.StdoutPipe()
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("ltpeer %s output:\n%s", args[0], p.out.String())
			p.mu.Unlock()
		}
	})
	return p
}

// expect waits for a line starting with prefix and returns the rest.
func (p *ltPeer) expect(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case l := <-p.lines:
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(rest)
			}
		case <-p.done:
			t.Fatalf("ltpeer ended before printing %q", prefix)
		case <-timeout:
			t.Fatalf("no %q from ltpeer within %v", prefix, within)
		}
	}
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		ln.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestLibtorrentUTPThroughUDPAssociate: a real libtorrent leecher with TCP
// switched off downloads a torrent over uTP, which it can only carry through
// swarmvpn's SOCKS5 UDP ASSOCIATE, from a libtorrent seeder.
func TestLibtorrentUTPThroughUDPAssociate(t *testing.T) {
	requireLibtorrent(t)
	tp := Start(t, Options{})
	dir := t.TempDir()
	seedDir, leechDir := filepath.Join(dir, "seed"), filepath.Join(dir, "leech")
	os.MkdirAll(seedDir, 0o755)
	payload := make([]byte, 6<<20)
	rand.Read(payload)
	file := filepath.Join(seedDir, "payload.bin")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	torrent := filepath.Join(dir, "t.torrent")
	if out, err := exec.Command(python, "testdata/ltpeer.py", "make", file, torrent).CombinedOutput(); err != nil {
		t.Fatalf("make torrent: %v\n%s", err, out)
	}

	seedPort, leechPort := freePort(t), freePort(t)
	seeder := startLT(t, "seed", torrent, seedDir, "--listen", "127.0.0.1:"+strconv.Itoa(seedPort), "--utp-only")
	if got := seeder.expect(t, "ready", 30*time.Second); got != strconv.Itoa(seedPort) {
		t.Fatalf("seeder listens on %s, want %d", got, seedPort)
	}
	leecher := startLT(t, "leech", torrent, leechDir, "--listen", "127.0.0.1:"+strconv.Itoa(leechPort),
		"--peer", "127.0.0.1:"+strconv.Itoa(seedPort), "--socks", tp.SOCKS, "--utp-only", "--timeout", "120")
	leecher.expect(t, "done", 150*time.Second)

	got, err := os.ReadFile(filepath.Join(leechDir, "payload.bin"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("downloaded file differs from the seeded one (%v)", err)
	}
	// Every byte came through the exit's UDP socket...
	if st := tp.Exit.Stats().UDP; st.BytesIn < uint64(len(payload)) {
		t.Fatalf("exit relayed %d bytes of UDP to the client, less than the %d-byte file", st.BytesIn, len(payload))
	}
	// ...and the seeder never saw the leecher's own address.
	seeder.mu.Lock()
	seen := seeder.out.String()
	seeder.mu.Unlock()
	if !strings.Contains(seen, "peer 127.0.0.1:") {
		t.Fatalf("seeder reported no peer:\n%s", seen)
	}
	if strings.Contains(seen, "peer 127.0.0.1:"+strconv.Itoa(leechPort)+"\n") {
		t.Fatalf("seeder saw the leecher's own port %d: traffic bypassed the exit", leechPort)
	}
}
