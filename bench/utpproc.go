package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// pyProc is a utp.py process. It ends when its stdin closes; stop does
// that, and kills it if it lingers.
type pyProc struct {
	role  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // what it prints; closed when it has ended
	done  chan struct{}
	tail  tailLines
}

// start runs utp.py with args; env is added to this process's
// environment.
func (r *utpRig) start(role string, env []string, args ...string) (*pyProc, error) {
	cmd := exec.Command(r.cfg.Python, append([]string{filepath.Join(r.dir, "utp.py")}, args...)...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = procAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s: %w", role, err)
	}
	p := &pyProc{role: role, cmd: cmd, stdin: stdin, lines: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 4096), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.tail.add(line)
			select {
			case p.lines <- line:
			default: // nobody reads a seeder's lines once it is ready
			}
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
		close(p.lines)
		close(p.done)
	}()
	return p, nil
}

// expect waits for a line that begins with word and returns the rest.
func (p *pyProc) expect(ctx context.Context, word string) (string, error) {
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("the %s ended (%s)%s", p.role, p.cmd.ProcessState, p.output())
			}
			if rest, ok := strings.CutPrefix(line, word); ok && (rest == "" || rest[0] == ' ') {
				return strings.TrimSpace(rest), nil
			}
		case <-ctx.Done():
			if context.Cause(ctx) == context.DeadlineExceeded {
				return "", fmt.Errorf("no %q from the %s in time%s", word, p.role, p.output())
			}
			return "", context.Cause(ctx)
		}
	}
}

// drain drops the lines the process has printed and nobody has read.
func (p *pyProc) drain() {
	for {
		select {
		case _, ok := <-p.lines:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// exited reports whether the process has ended, and if so how.
func (p *pyProc) exited() (bool, string) {
	select {
	case <-p.done:
		return true, fmt.Sprintf("the %s ended (%s)%s", p.role, p.cmd.ProcessState, p.output())
	default:
		return false, ""
	}
}

// stop closes the process's stdin, which ends it, and kills it if it has
// not ended within utpStopGrace. It returns once the process has been
// reaped. Idempotent.
func (p *pyProc) stop() {
	p.stdin.Close()
	t := time.NewTimer(utpStopGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// output returns the process's last lines, indented, for an error message.
func (p *pyProc) output() string { return p.tail.output() }
