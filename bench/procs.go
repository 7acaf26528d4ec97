package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds how long a started process may take to say where it
// listens.
const startTimeout = 20 * time.Second

// stopGrace is how long a process is given to end after SIGTERM before it
// is killed.
const stopGrace = 5 * time.Second

// Proc is a swarmvpn process that bench started: an exit or a client. Only
// Stop ends it, by its PID.
type Proc struct {
	Role string // "exit", "client", ...
	PID  int

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	tail tailLines     // its last lines of output, for error messages
}

// maxTail is how many output lines a process's tailLines keeps.
const maxTail = 20

// tailLines keeps the last maxTail lines a process printed, for error
// messages. The zero value is ready.
type tailLines struct {
	mu    sync.Mutex
	lines []string
}

func (t *tailLines) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > maxTail {
		t.lines = t.lines[len(t.lines)-maxTail:]
	}
}

// output returns the lines, indented, to end an error message.
func (t *tailLines) output() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	return "; its last output:\n    " + strings.Join(t.lines, "\n    ")
}

// startProc runs exe with args and waits until found, called on each line
// the process writes (stdout and stderr alike), returns a non-empty
// string. The process gets a process group of its own (so a Ctrl-C on the
// terminal reaches only bench, which then stops it) and, on Linux, is
// killed if bench dies.
func startProc(ctx context.Context, role, exe string, args []string, found func(line string) string) (*Proc, string, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = childEnv()
	cmd.SysProcAttr = procAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start the %s: %w", role, err)
	}
	p := &Proc{Role: role, PID: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	answer := make(chan string, 1)
	var wg sync.WaitGroup
	scan := func(r io.Reader) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 4096), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.tail.add(line)
			if s := found(line); s != "" {
				select {
				case answer <- s:
				default:
				}
			}
		}
		io.Copy(io.Discard, r)
	}
	wg.Go(func() { scan(stdout) })
	wg.Go(func() { scan(stderr) })
	go func() {
		wg.Wait() // pipes first: Wait closes them
		cmd.Wait()
		close(p.done)
	}()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case s := <-answer:
		return p, s, nil
	case <-p.done:
		return nil, "", fmt.Errorf("the %s ended before it was ready (%s)%s", role, cmd.ProcessState, p.output())
	case <-timer.C:
		p.Stop()
		return nil, "", fmt.Errorf("the %s was not ready within %v%s", role, startTimeout, p.output())
	case <-ctx.Done():
		p.Stop()
		return nil, "", context.Cause(ctx)
	}
}

// output returns the process's last lines, indented, for an error message.
func (p *Proc) output() string { return p.tail.output() }

// Stop ends the process: SIGTERM, then SIGKILL after stopGrace. It returns
// once the process has been reaped. Stop is idempotent.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopGrace)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Exited reports whether the process has ended, and if so how.
func (p *Proc) Exited() (bool, string) {
	select {
	case <-p.done:
		return true, fmt.Sprintf("the %s ended (%s)%s", p.Role, p.cmd.ProcessState, p.output())
	default:
		return false, ""
	}
}

// RSS returns the process's resident set size in bytes, from
// /proc/PID/status.
func (p *Proc) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return 0, fmt.Errorf("memory of the %s: %w", p.Role, err)
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(rest)) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("memory of the %s: no VmRSS line in /proc/%d/status", p.Role, p.PID)
}

// childEnv is this process's environment without SWARMVPN_* settings, so
// that the processes bench starts run with exactly the flags it gives.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SWARMVPN_") {
			env = append(env, kv)
		}
	}
	return env
}

// startExit starts an exit on loopback that may reach loopback targets,
// with its own state dir, and returns it with its address
// (PEERID@127.0.0.1:PORT, the first line it prints).
func startExit(ctx context.Context, role, exe, stateDir string, wrap func(string, []string) []string) (*Proc, string, error) {
	args := []string{"exit", "--state-dir", stateDir, "--listen", "127.0.0.1:0", "--allow-private", "--mdns=false", "--dht=false",
		"--max-flows-per-client", "100000", // the idle workload holds 10,000 and more
		// Every client bench starts comes from 127.0.0.1, the capacity
		// workload's maxCapacityClients at once: admit them all.
		"--max-clients", "1024", "--max-handshakes-per-source", "256",
		"--log-format", "json", "--log-level", "warn"}
	return startProc(ctx, role, exe, wrap(role, args), func(line string) string {
		if strings.Contains(line, "@") && !strings.HasPrefix(line, "{") {
			return strings.TrimSpace(line)
		}
		return ""
	})
}

// startClient starts a client of exit (PEERID@HOST:PORT) with its own state
// dir, SOCKS5 on a free loopback port and no HTTP proxy, and returns it with
// its SOCKS5 address. extra are more flags (--hops 2 --relay ...).
func startClient(ctx context.Context, role, exe, stateDir, exit string, wrap func(string, []string) []string, extra ...string) (*Proc, string, error) {
	args := []string{"connect", "--state-dir", stateDir, "--exit", exit, "--socks", "127.0.0.1:0", "--mdns=false", "--dht=false",
		"--http", "off", "--log-format", "json", "--log-level", "info"}
	args = append(args, extra...)
	return startProc(ctx, role, exe, wrap(role, args), func(line string) string {
		var rec struct {
			Msg   string `json:"msg"`
			SOCKS string `json:"socks"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "client ready" {
			return rec.SOCKS
		}
		return ""
	})
}
