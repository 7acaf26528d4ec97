package client

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
)

// ControlSocketName is the control socket's name in the state dir.
const ControlSocketName = "control.sock"

// maxSocketPath is the longest path a unix socket may have: sun_path is 108
// bytes on Linux and 104 elsewhere, a terminating NUL included.
func maxSocketPath() int {
	if runtime.GOOS == "linux" {
		return 107
	}
	return 103
}

// CheckControlPath refuses a control socket path too long for a unix
// socket, with advice.
func CheckControlPath(path string) error {
	if limit := maxSocketPath(); len(path) > limit {
		return fmt.Errorf("the control socket path %s is %d bytes, longer than the %d a unix socket allows: use a shorter --state-dir",
			path, len(path), limit)
	}
	return nil
}

// ListenControl opens the control socket at path (mode 0600), so that a
// caller can open every listener before it starts anything. A socket left
// by a dead client is replaced; one a live client answers on is an error.
// Closing the listener removes the socket.
func ListenControl(path string) (*net.UnixListener, error) {
	if err := CheckControlPath(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the state dir for the control socket: %w", err)
	}
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		if err := removeStaleSocket(path); err != nil {
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

// removeStaleSocket removes the socket at path if no process answers on it.
func removeStaleSocket(path string) error {
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
		return fmt.Errorf("another swarmvpn client is running with state dir %s (it answers on %s): stop it first, or give this one another --state-dir",
			filepath.Dir(path), path)
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot tell whether a running swarmvpn client owns %s (%v): remove it if none is running", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot remove the stale control socket %s: %w", path, err)
	}
	return nil
}

// Control socket requests. A connection may start with one line naming its
// request; one that sends nothing within requestWait gets the status, as
// the first versions of 'swarmvpn status' expect.
const (
	RequestStatus = "status" // the Report
	RequestCheck  = "check"  // probe the forwarded port first, then the Report
	requestWait   = 200 * time.Millisecond
	checkWait     = 20 * time.Second
)

// ServeControl answers status requests on ln, a listener ListenControl
// opened, until ctx ends: each connection gets one JSON document, report(),
// and is closed. It closes ln, and returns after all its goroutines have
// ended.
func ServeControl(ctx context.Context, ln net.Listener, report func() Report) error {
	return ServeControlWith(ctx, ln, report, nil)
}

// ServeControlWith is ServeControl that also runs check(ctx) before the
// report when a connection asks for RequestCheck; check nil ignores such
// requests.
func ServeControlWith(ctx context.Context, ln net.Listener, report func() Report, check func(context.Context)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			ln.Close()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		wg.Go(func() { answerStatus(ctx, c, report, check) })
	}
}

func answerStatus(ctx context.Context, c net.Conn, report func() Report, check func(context.Context)) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetReadDeadline(time.Now().Add(requestWait))
	line, _ := bufio.NewReaderSize(io.LimitReader(c, 64), 64).ReadString('\n')
	if strings.TrimSpace(line) == RequestCheck && check != nil {
		cctx, cancel := context.WithTimeout(ctx, checkWait)
		check(cctx)
		cancel()
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	json.NewEncoder(c).Encode(report()) // a reader that went away needs no answer
}
