package portfwd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Announcer tells the local torrent client, and the user, the forwarded
// port each time it is obtained: a log line, a file holding the number,
// and a hook command.
type Announcer struct {
	// PortFile, when set, receives the port number alone on one line.
	PortFile string
	// Hook, when set, is run with sh -c after {{PORT}} is replaced by the
	// port, e.g. "transmission-remote -p {{PORT}}".
	Hook string
	// HookTimeout bounds a hook run. Default 30s.
	HookTimeout time.Duration
	Log         *slog.Logger

	mu   sync.Mutex
	port uint16
}

// Port returns the last announced port, 0 before the first.
func (a *Announcer) Port() uint16 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.port
}

// Announce records port and tells everyone configured. Port 0 is never
// announced. Failures are logged; they do not stop the client.
func (a *Announcer) Announce(ctx context.Context, port uint16) {
	if port == 0 {
		return
	}
	a.mu.Lock()
	a.port = port
	a.mu.Unlock()
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if a.PortFile != "" {
		if err := writePortFile(a.PortFile, port); err != nil {
			log.Warn("cannot write the port file", "file", a.PortFile, "err", err)
		}
	}
	if a.Hook != "" {
		if err := a.runHook(ctx, port); err != nil {
			log.Warn("port hook failed", "err", err)
		} else {
			log.Info("port hook done", "port", port)
		}
	}
}

// writePortFile replaces path atomically, so a reader never sees it half
// written.
func writePortFile(path string, port uint16) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".port-*")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(tmp, port)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

func (a *Announcer) runHook(ctx context.Context, port uint16) error {
	timeout := a.HookTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmdline := strings.ReplaceAll(a.Hook, "{{PORT}}", strconv.Itoa(int(port)))
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
	cmd.Env = append(os.Environ(), "SWARMVPN_PORT="+strconv.Itoa(int(port)))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%q: %v: %s", cmdline, err, strings.TrimSpace(string(out)))
	}
	return nil
}
