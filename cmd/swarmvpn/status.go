package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/internal/control"
)

// maxStatusSize bounds a status document.
const maxStatusSize = 1 << 20

// errNoClient: nothing answers on the control socket.
var errNoClient = errors.New("no client")

// fetchStatus asks the client on the control socket at path for its status,
// returning the document as sent and as read.
func fetchStatus(ctx context.Context, path string) ([]byte, client.Report, error) {
	return fetchRequest(ctx, path, client.RequestStatus, 5*time.Second)
}

// fetchRequest sends request on the control socket at path and reads the
// status that answers it, waiting at most wait.
func fetchRequest(ctx context.Context, path, request string, wait time.Duration) ([]byte, client.Report, error) {
	var r client.Report
	raw, err := fetchDoc(ctx, path, "client", request, wait, &r)
	return raw, r, err
}

// fetchDoc sends request to the swarmvpn role (client or exit) on the
// control socket at path, and reads the status that answers it into v,
// waiting at most wait.
func fetchDoc(ctx context.Context, path, role, request string, wait time.Duration, v any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return nil, errNoClient
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("cannot ask the swarmvpn %s at %s: permission denied: run status as the user that runs the %s", role, path, role)
	case err != nil:
		return nil, fmt.Errorf("cannot ask the swarmvpn %s at %s: %w", role, path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	io.WriteString(c, request+"\n") // one too old to read it answers all the same
	raw, err := io.ReadAll(io.LimitReader(c, maxStatusSize))
	if err == nil {
		err = json.Unmarshal(raw, v)
	}
	if err != nil {
		return nil, fmt.Errorf("the swarmvpn %s at %s sent no status this command can read (%v): is it the same version?", role, path, err)
	}
	return raw, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name: "status",
		Usage: "show what the running client is doing: its exit, the link, the forwarded port, its proxies; " +
			"or, with no client running (or --exit), the running exit: its router mappings, public address and reachability",
		Flags: []cli.Flag{
			stringFlag("state-dir", "", "the running client's or exit's state `DIR` (default: swarmvpn under the user's config directory)"),
			&cli.BoolFlag{Name: "exit", Usage: "show the exit running with this state dir, even if a client runs there too"},
			&cli.BoolFlag{Name: "json", Usage: "print the status as one JSON document (counters only: no rates)"},
			&cli.DurationFlag{Name: "interval", Value: time.Second,
				Usage: "ask twice this far apart to show transfer rates (0: totals only)"},
			&cli.BoolFlag{Name: "check", Usage: "have the exit probe the forwarded port now (TCP and UDP, as a peer would), and show the result"},
		},
		Action: runStatus,
	}
}

func runStatus(ctx context.Context, cmd *cli.Command) error {
	dir, err := stateDir(cmd)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, client.ControlSocketName)
	if err := client.CheckControlPath(path); err != nil {
		return err
	}
	w := cmd.Root().Writer
	if cmd.Bool("exit") {
		return runExitStatus(ctx, cmd, dir, true)
	}
	var raw []byte
	var r client.Report
	if cmd.Bool("check") {
		raw, r, err = fetchRequest(ctx, path, client.RequestCheck, 30*time.Second)
	} else {
		raw, r, err = fetchStatus(ctx, path)
	}
	if errors.Is(err, errNoClient) {
		if err := runExitStatus(ctx, cmd, dir, false); !errors.Is(err, errNoClient) {
			return err
		}
		return fmt.Errorf("no swarmvpn client is running with state dir %s: start one with 'swarmvpn connect'", dir)
	}
	if err != nil {
		return err
	}
	if cmd.Bool("json") {
		_, err := fmt.Fprintf(w, "%s\n", bytes.TrimSpace(raw))
		return err
	}
	var prev *client.Traffic
	if d := cmd.Duration("interval"); d > 0 && r.Traffic != nil {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		prev = r.Traffic
		if _, r2, err := fetchStatus(ctx, path); err == nil {
			r = r2
		} else {
			prev = nil // the client went away: show what it said
		}
	}
	printStatus(w, r, prev, time.Now())
	return nil
}

// runExitStatus prints the status of the exit running with state dir dir.
// When none runs it returns errNoClient, or, if it was asked for
// explicitly, an error that says so.
func runExitStatus(ctx context.Context, cmd *cli.Command, dir string, asked bool) error {
	path := filepath.Join(dir, exitControlName)
	if err := control.CheckPath(path); err != nil {
		return err
	}
	var s exitStatus
	raw, err := fetchDoc(ctx, path, "exit", control.RequestStatus, 5*time.Second, &s)
	if errors.Is(err, errNoClient) && asked {
		return fmt.Errorf("no swarmvpn exit is running with state dir %s: start one with 'swarmvpn exit'", dir)
	}
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if cmd.Bool("json") {
		_, err := fmt.Fprintf(w, "%s\n", bytes.TrimSpace(raw))
		return err
	}
	printExitStatus(w, s, time.Now())
	return nil
}
