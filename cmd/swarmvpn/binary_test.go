package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"

	"github.com/swarmvpn/swarmvpn/internal/testnet"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "swarmvpn-bin")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "swarmvpn")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testEnv is the environment of every process the tests start: mDNS and
// router port mapping off, since tests may send nothing beyond loopback and
// multicast or the machine's gateway would reach its real network; and a
// state dir of the tests' own for processes given none.
//
// Each process gets a state dir of its own unless the test gives one (a
// flag, or SWARMVPN_STATE_DIR in its environment) or asks for the default
// with defaultStateDirEnv: processes that shared one would hold each other's
// lock and control socket.
func testEnv() []string {
	env := append(os.Environ(), "SWARMVPN_MDNS=false", "SWARMVPN_NAT=off")
	if os.Getenv("SWARMVPN_STATE_DIR") == "" && os.Getenv(defaultStateDirEnv) == "" {
		dir, err := os.MkdirTemp(filepath.Dir(binPath), "state")
		if err != nil {
			panic(err)
		}
		env = append(env, "SWARMVPN_STATE_DIR="+dir)
	}
	return env
}

// defaultStateDirEnv, set by a test, leaves the binary's state dir to its
// own rules (a config file, $HOME).
const defaultStateDirEnv = "SWARMVPN_TEST_DEFAULT_STATE_DIR"

// run runs the binary to completion and returns stdout, stderr and the exit
// code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = testEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// proc is a long-running swarmvpn process whose output lines are collected.
type proc struct {
	cmd    *exec.Cmd
	stdout chan string
	logs   chan map[string]any
	mu     sync.Mutex
	all    bytes.Buffer // everything it wrote, for failure reports
	done   chan struct{}
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startIn(t, "", args...)
}

// startIn starts the binary in network namespace ns ("": this one).
func startIn(t *testing.T, ns string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	if ns != "" { // ip netns exec becomes the binary: same PID, same signals
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns, binPath}, args...)...)
	}
	p := &proc{cmd: cmd, stdout: make(chan string, 64),
		logs: make(chan map[string]any, 256), done: make(chan struct{})}
	p.cmd.Env = testEnv()
	so, _ := p.cmd.StdoutPipe()
	se, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.scan(so, func(l string) { p.stdout <- l }) })
	wg.Go(func() {
		p.scan(se, func(l string) {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil {
				select {
				case p.logs <- m:
				default:
				}
			}
		})
	})
	go func() { wg.Wait(); p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", args[0], p.output())
		}
	})
	return p
}

func (p *proc) scan(r io.Reader, each func(string)) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.mu.Lock()
		p.all.WriteString(sc.Text() + "\n")
		p.mu.Unlock()
		each(sc.Text())
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.all.String()
}

// waitLog returns the first log record whose msg is msg.
func (p *proc) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m := <-p.logs:
			if m["msg"] == msg {
				return m
			}
		case <-p.done:
			t.Fatalf("process ended before logging %q", msg)
		case <-timeout:
			t.Fatalf("no %q log line within 15s", msg)
		}
	}
}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("process did not stop within 15s of SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}

func TestKeygenAndID(t *testing.T) {
	key := filepath.Join(t.TempDir(), "exit.key")
	out, _, code := run(t, "keygen", "--key", key)
	id := strings.TrimSpace(out)
	if code != 0 || len(id) != 52 {
		t.Fatalf("keygen: exit %d, output %q", code, out)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
	out, _, code = run(t, "id", "--key", key)
	if code != 0 || out != id+"\n" {
		t.Fatalf("id: exit %d, output %q, want %q", code, out, id+"\n")
	}
	_, errOut, code := run(t, "keygen", "--key", key)
	if code == 0 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("keygen over an existing key: exit %d, %q", code, errOut)
	}
}

// TestBinaryEndToEnd starts an exit and a client as processes and sends
// requests through both proxies.
func TestBinaryEndToEnd(t *testing.T) {
	dir := t.TempDir()
	exitKey := filepath.Join(dir, "exit.key")
	out, _, _ := run(t, "keygen", "--key", exitKey)
	exitID := strings.TrimSpace(out)

	exit := start(t, "exit", "--key", exitKey, "--listen", "127.0.0.1:0", "--allow-private", "--log-format", "json")
	var exitAddr string
	select {
	case exitAddr = <-exit.stdout:
	case <-time.After(15 * time.Second):
		t.Fatalf("exit printed no address; output:\n%s", exit.output())
	}
	if !strings.HasPrefix(exitAddr, exitID+"@127.0.0.1:") {
		t.Fatalf("exit address %q, want %s@127.0.0.1:PORT", exitAddr, exitID)
	}

	clientProc := start(t, "connect", "--state-dir", filepath.Join(dir, "client"), "--exit", exitAddr,
		"--socks", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-format", "json")
	clientProc.waitLog(t, "created a new identity")
	ready := clientProc.waitLog(t, "client ready")
	socksAddr, httpAddr := ready["socks"].(string), ready["http"].(string)
	if _, err := os.Stat(filepath.Join(dir, "client", "client.key")); err != nil {
		t.Fatalf("client key not created in the state dir: %v", err)
	}

	body := make([]byte, 2<<20)
	rand.Read(body)
	var seen []string
	var seenMu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenMu.Lock()
		seen = append(seen, r.RemoteAddr)
		seenMu.Unlock()
		in, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(in)
		w.Header().Set("X-Sum", hex.EncodeToString(sum[:]))
		w.Write(body)
	}))
	defer srv.Close()
	target := strings.TrimPrefix(srv.URL, "http://")

	// SOCKS5: a raw HTTP request through a CONNECT flow.
	c, _, err := testnet.SOCKS5Dial(t.Context(), socksAddr, target)
	if err != nil {
		t.Fatalf("socks dial: %v\nclient:\n%s", err, clientProc.output())
	}
	io.WriteString(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	c.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("through SOCKS5: got %d bytes, want %d identical", len(got), len(body))
	}

	// HTTP proxy: a plain request with a body.
	proxyURL, _ := url.Parse("http://" + httpAddr)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	defer hc.CloseIdleConnections()
	upload := make([]byte, 1<<20)
	rand.Read(upload)
	resp, err = hc.Post(srv.URL+"/up", "application/octet-stream", bytes.NewReader(upload))
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(upload)
	if !bytes.Equal(got, body) || resp.Header.Get("X-Sum") != hex.EncodeToString(sum[:]) {
		t.Fatalf("through the HTTP proxy: status %d, %d bytes, upload sum ok %v", resp.StatusCode, len(got),
			resp.Header.Get("X-Sum") == hex.EncodeToString(sum[:]))
	}
	if len(seen) != 2 {
		t.Fatalf("target saw %d requests, want 2", len(seen))
	}

	// status and peers ask the running client through its control socket.
	out, errOut, code := run(t, "status", "--state-dir", filepath.Join(dir, "client"), "--json")
	var st client.Report
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: exit %d, %q %q", code, out, errOut)
	}
	if st.Link != "up" || st.Exit != exitAddr || st.SOCKS != socksAddr {
		t.Fatalf("status %+v: want link up to %s with socks %s", st, exitAddr, socksAddr)
	}
	out, _, code = run(t, "peers", "--state-dir", filepath.Join(dir, "client"), "--json")
	var peers []client.ExitReport
	if code != 0 || json.Unmarshal([]byte(out), &peers) != nil || len(peers) != 1 {
		t.Fatalf("peers: exit %d, %q", code, out)
	}
	if p := peers[0]; p.Exit != exitAddr || p.Role != "active" || p.Source != "static" || !slices.Contains(p.Caps, "p2p") {
		t.Fatalf("peers: %+v", p)
	}

	if code := clientProc.stop(t); code != 0 {
		t.Errorf("client exit code %d after SIGTERM", code)
	}
	if code := exit.stop(t); code != 0 {
		t.Errorf("exit exit code %d after SIGTERM", code)
	}
}

func TestBinaryBadInput(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	key := filepath.Join(dir, "k")
	out, _, _ := run(t, "keygen", "--key", key)
	good := strings.TrimSpace(out) + "@127.0.0.1:7843"
	unreadable := filepath.Join(dir, "unreadable")
	os.WriteFile(unreadable, []byte("garbage"), 0o600)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no exit", []string{"connect", "--state-dir", dir}, "no exit given"},
		{"malformed exit", []string{"connect", "--state-dir", dir, "--exit", "127.0.0.1:7843"}, "PEERID@HOST:PORT"},
		{"bad peer ID", []string{"connect", "--state-dir", dir, "--exit", "abc@127.0.0.1:7843"}, "peer ID"},
		{"missing key", []string{"connect", "--key", filepath.Join(dir, "nope"), "--exit", good}, "does not exist"},
		{"garbage key", []string{"connect", "--key", unreadable, "--exit", good}, "cannot use key file"},
		{"port in use", []string{"connect", "--state-dir", dir, "--exit", good, "--socks", busy.Addr().String()}, "already in use"},
		{"http port in use", []string{"connect", "--state-dir", dir, "--exit", good, "--socks", "127.0.0.1:0", "--http", busy.Addr().String()}, "--http"},
		{"bad listen", []string{"exit", "--state-dir", dir, "--listen", "7843"}, "HOST:PORT"},
		{"bad rule", []string{"exit", "--state-dir", dir, "--rule", "permit everything"}, "--rule"},
		{"bad log level", []string{"exit", "--state-dir", dir, "--log-level", "loud"}, "--log-level"},
		{"bad metrics", []string{"exit", "--state-dir", dir, "--listen", "127.0.0.1:0", "--metrics", "9273"}, "--metrics"},
		{"metrics port in use", []string{"connect", "--state-dir", dir, "--exit", good, "--socks", "127.0.0.1:0", "--http", "off",
			"--metrics", busy.Addr().String()}, "--metrics"},
		{"half credentials", []string{"connect", "--state-dir", dir, "--exit", good, "--socks-user", "u"}, "go together"},
		{"socks beyond loopback", []string{"connect", "--state-dir", dir, "--exit", good, "--socks", "0.0.0.0:0"}, "--socks-user and --socks-pass"},
		{"http beyond loopback", []string{"connect", "--state-dir", dir, "--exit", good, "--socks", "127.0.0.1:0", "--http", ":0"}, "ssh -L"},
		{"bad rate", []string{"exit", "--state-dir", dir, "--rate-per-client", "fast"}, "--rate-per-client"},
		{"rate below 1k", []string{"exit", "--state-dir", dir, "--rate-per-client", "0.5"}, "smallest rate"},
		{"negative client cap", []string{"exit", "--state-dir", dir, "--max-clients", "-5"}, "--max-clients -5: want at least 1"},
		{"zero UDP idle", []string{"exit", "--state-dir", dir, "--udp-idle", "0s"}, "--udp-idle 0s"},
		{"negative dial timeout", []string{"exit", "--state-dir", dir, "--dial-timeout", "-1s"}, "--dial-timeout -1s"},
		{"small buffer cap", []string{"exit", "--state-dir", dir, "--max-buffer-per-client", "1k"}, "--max-buffer-per-client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := run(t, tt.args...)
			if code == 0 {
				t.Fatalf("exit status 0")
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "swarmvpn: ") || !strings.Contains(last, tt.want) {
				t.Fatalf("stderr %q: want one line mentioning %q", errOut, tt.want)
			}
		})
	}
}
