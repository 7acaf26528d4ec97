package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/portfwd"
)

// doctorSafe is what doctor prints when it finds nothing.
const doctorSafe = "qBittorrent's settings are safe for swarmvpn"

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "find qBittorrent settings that leak around swarmvpn or defeat it; --fix changes them",
		Flags: append(qbittorrentFlags(),
			stringFlag("socks", "127.0.0.1:1080", "the `IP:PORT` 'swarmvpn connect' serves SOCKS5 on"),
			&cli.BoolFlag{Name: "fix", Sources: env("fix"),
				Usage: "change the settings found wrong (in one call), then check again"},
		),
		Action: runDoctor,
	}
}

// qbittorrentFlags say how to reach qBittorrent's WebUI.
func qbittorrentFlags() []cli.Flag {
	return []cli.Flag{
		stringFlag("qbittorrent", "http://127.0.0.1:8080", "qBittorrent's WebUI `URL`"),
		stringFlag("qbittorrent-user", "", "log in to the WebUI as `USER` (not needed when it bypasses authentication for localhost)"),
		stringFlag("qbittorrent-pass", "", "log in to the WebUI with `PASSWORD`"),
	}
}

// qbittorrentClient builds the WebUI client qbittorrentFlags describe.
func qbittorrentClient(cmd *cli.Command, log *slog.Logger) (*portfwd.QBittorrent, error) {
	raw := cmd.String("qbittorrent")
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--qbittorrent %q: want the WebUI's URL, e.g. http://127.0.0.1:8080", raw)
	}
	user, pass := cmd.String("qbittorrent-user"), cmd.String("qbittorrent-pass")
	if (user == "") != (pass == "") {
		return nil, errors.New("--qbittorrent-user and --qbittorrent-pass go together: give both, or neither when the WebUI bypasses authentication for localhost")
	}
	return &portfwd.QBittorrent{URL: raw, Username: user, Password: pass, Log: log}, nil
}

func runDoctor(ctx context.Context, cmd *cli.Command) error {
	socks, err := netip.ParseAddrPort(cmd.String("socks"))
	if err != nil {
		return fmt.Errorf("--socks %q: want the IP:PORT 'swarmvpn connect' serves SOCKS5 on, e.g. 127.0.0.1:1080", cmd.String("socks"))
	}
	qb, err := qbittorrentClient(cmd, nil)
	if err != nil {
		return err
	}
	prefs, err := qb.Preferences(ctx)
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	warnHTTPSTrackers(ctx, w, qb)
	findings := portfwd.Diagnose(prefs, socks)
	if len(findings) == 0 {
		fmt.Fprintln(w, doctorSafe)
		return nil
	}
	printFindings(w, findings)
	if !cmd.Bool("fix") {
		return fmt.Errorf("qBittorrent has %s unsafe for swarmvpn: run again with --fix to change them", settings(len(findings)))
	}

	fix := map[string]any{}
	for _, f := range findings {
		maps.Copy(fix, f.Fix)
	}
	if err := qb.SetPreferences(ctx, fix); err != nil {
		return fmt.Errorf("apply the fixes: %w", err)
	}
	fmt.Fprintf(w, "set %s\n", formatPrefs(fix))
	if prefs, err = qb.Preferences(ctx); err != nil {
		return fmt.Errorf("check the fixes: %w", err)
	}
	left := portfwd.Diagnose(prefs, socks)
	if len(left) == 0 {
		fmt.Fprintln(w, doctorSafe)
		return nil
	}
	fmt.Fprintln(w, "still wrong after the fixes:")
	printFindings(w, left)
	return fmt.Errorf("qBittorrent kept %s unsafe: change them in its Tools > Options (Connection, BitTorrent)", settings(len(left)))
}

// settings counts settings in words.
func settings(n int) string {
	if n == 1 {
		return "1 setting"
	}
	return fmt.Sprintf("%d settings", n)
}

func printFindings(w io.Writer, findings []portfwd.Finding) {
	for _, f := range findings {
		fmt.Fprintf(w, "✗ %s: %s; fix: %s\n", f.Setting, f.Problem, formatPrefs(f.Fix))
	}
}

// formatPrefs shows preferences as key=value, values as JSON, in key order.
func formatPrefs(prefs map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(prefs)) {
		v, err := json.Marshal(prefs[k])
		if err != nil {
			v = fmt.Appendf(nil, "%v", prefs[k])
		}
		parts = append(parts, k+"="+string(v))
	}
	return strings.Join(parts, ", ")
}

// warnHTTPSTrackers warns when qBittorrent is too old to announce the
// forwarded port itself and uses trackers whose announces swarmvpn cannot
// rewrite. It is advice, not a leak: it does not change the exit status,
// and when the trackers cannot be read it says nothing.
func warnHTTPSTrackers(ctx context.Context, w io.Writer, qb *portfwd.QBittorrent) {
	version, err := qb.Version(ctx)
	if err != nil {
		return
	}
	trackers, _ := qb.TrackerURLs(ctx)
	if advice := portfwd.HTTPSTrackerAdvice(version, trackers); advice != "" {
		fmt.Fprintf(w, "! trackers: %s\n", advice)
	}
}
