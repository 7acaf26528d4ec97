package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/exitnet/discovery"
)

func peersCommand() *cli.Command {
	return &cli.Command{
		Name:  "peers",
		Usage: "list the exits the running client knows; with none running, look for exits on the LAN",
		Flags: []cli.Flag{
			stringFlag("state-dir", "", "the running client's state `DIR` (default: swarmvpn under the user's config directory)"),
			&cli.BoolFlag{Name: "json", Usage: "print the exits as one JSON document"},
			&cli.DurationFlag{Name: "browse", Value: 3 * time.Second, Usage: "with no client running, look on the LAN for this long"},
		},
		Action: runPeers,
	}
}

func runPeers(ctx context.Context, cmd *cli.Command) error {
	dir, err := stateDir(cmd)
	if err != nil {
		return err
	}
	var exits []client.ExitReport
	_, r, err := fetchStatus(ctx, filepath.Join(dir, client.ControlSocketName))
	switch {
	case err == nil:
		exits = r.Exits
	case errors.Is(err, errNoClient):
		exits, err = browseExits(ctx, cmd.Duration("browse"))
		if err != nil {
			return fmt.Errorf("no client is running with state dir %s, and the LAN cannot be searched: %v", dir, err)
		}
	default:
		return err
	}
	w := cmd.Root().Writer
	if cmd.Bool("json") {
		if exits == nil {
			exits = []client.ExitReport{}
		}
		return json.NewEncoder(w).Encode(exits)
	}
	printPeers(w, exits)
	return nil
}

// browseExits looks for exits on the LAN for d.
func browseExits(ctx context.Context, d time.Duration) ([]client.ExitReport, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]client.ExitReport{}
	var failure error
	start := time.Now()
	discovery.Browse(ctx, d/2, func(f discovery.Found) {
		mu.Lock()
		defer mu.Unlock()
		seen[f.Exit.String()] = client.ExitReport{Exit: f.Exit.String(), Source: string(discovery.SourceMDNS), Caps: f.Caps,
			Age: time.Since(start).Round(time.Second).String()}
	}, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if failure == nil && !errors.Is(err, discovery.ErrBadAnswer) {
			failure = err
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 && failure != nil {
		return nil, failure
	}
	out := make([]client.ExitReport, 0, len(seen))
	for _, e := range seen {
		out = append(out, e)
	}
	return out, nil
}

func printPeers(w io.Writer, exits []client.ExitReport) {
	if len(exits) == 0 {
		fmt.Fprintln(w, "no exits known")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "EXIT\tROLE\tRTT\tCAPS\tLOAD\tSOURCE\tAGE\tVERIFIED\tNOTE")
	for _, e := range exits {
		role := e.Role
		if role == "" {
			role = "-"
		}
		rtt := e.RTT
		if rtt == "" {
			rtt = "-"
		}
		verified := "-"
		if !e.Verified.IsZero() {
			verified = time.Since(e.Verified).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f%%\t%s\t%s\t%s\t%s\n", e.Exit, role, rtt, strings.Join(e.Caps, ","),
			e.Load*100, e.Source, e.Age, verified, e.LastError)
	}
	tw.Flush()
}
