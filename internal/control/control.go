package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/listener"
)

// maxSocketPath is the longest path a unix socket may have: sun_path is 108
// bytes on Linux and 104 elsewhere, a terminating NUL included.
func maxSocketPath() int {
	if runtime.GOOS == "linux" {
		return 107
	}
	return 103
}

// CheckPath refuses a control socket path too long for a unix socket, with
// advice.
func CheckPath(path string) error {
	if limit := maxSocketPath(); len(path) > limit {
		return fmt.Errorf("the control socket path %s is %d bytes, longer than the %d a unix socket allows: use a shorter --state-dir",
			path, len(path), limit)
	}
	return nil
}

// Listen opens the control socket at path (mode 0600) for the swarmvpn
// role ("client", "exit"), so that a caller can open every listener before
// it starts anything. A socket left by a dead process is replaced; one a
// live process answers on is an error. Closing the listener removes the
// socket.
func Listen(path, role string) (*net.UnixListener, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the state dir for the control socket: %w", err)
	}
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		if err := removeStale(path, role); err != nil {
			return nil, err
		}
		ln, err = net.ListenUnix("unix", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot listen on the control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("cannot make the control socket %s private: %w", path, err)
	}
	return ln, nil
}

// removeStale removes the socket at path if no process answers on it.
func removeStale(path, role string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("cannot listen on the control socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("cannot listen on the control socket %s: a file that is not a socket is in the way: remove it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("another swarmvpn %s is running with state dir %s (it answers on %s): stop it first, or give this one another --state-dir",
			role, filepath.Dir(path), path)
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot tell whether a running swarmvpn %s owns %s (%v): remove it if none is running", role, path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot remove the stale control socket %s: %w", path, err)
	}
	return nil
}

// Requests. A connection may start with one line naming its request; one
// that sends nothing within RequestWait gets the status, as the first
// versions of 'swarmvpn status' expect.
const (
	RequestStatus = "status" // the status document
	RequestCheck  = "check"  // run the process's check first, then the status
	RequestWait   = 200 * time.Millisecond
	// CheckWait bounds the check a RequestCheck runs.
	CheckWait = 20 * time.Second
)

// Serve answers status requests on ln, a listener Listen opened, until ctx
// ends: each connection gets one JSON document, report(), and is closed. It
// closes ln, and returns after all its goroutines have ended.
func Serve[T any](ctx context.Context, ln net.Listener, report func() T) error {
	return ServeWith(ctx, ln, report, nil)
}

// ServeWith is Serve that also runs check(ctx), bounded by CheckWait,
// before the report when a connection asks for RequestCheck; check nil
// answers such a request with the report alone.
func ServeWith[T any](ctx context.Context, ln net.Listener, report func() T, check func(context.Context)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if err := listener.Accept(ctx, ln, &wg, nil, func(c net.Conn) { answer(ctx, c, report, check) }); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

func answer[T any](ctx context.Context, c net.Conn, report func() T, check func(context.Context)) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetReadDeadline(time.Now().Add(RequestWait))
	line, _ := bufio.NewReaderSize(io.LimitReader(c, 64), 64).ReadString('\n')
	if strings.TrimSpace(line) == RequestCheck && check != nil {
		cctx, cancel := context.WithTimeout(ctx, CheckWait)
		check(cctx)
		cancel()
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	json.NewEncoder(c).Encode(report()) // a reader that went away needs no answer
}
