package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/ui"
)

// TestUIStatusIsStatusJSON: the client's page serves at /api/status what
// 'status --json' prints, byte for byte.
func TestUIStatusIsStatusJSON(t *testing.T) {
	dir := t.TempDir()
	report := testReport
	report.Traffic = &client.Traffic{At: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), FlowsOpen: 3, UDPOpen: 1, BytesIn: 99}
	report.Events = []client.Event{{At: time.Date(2026, 5, 1, 11, 0, 0, 0, time.UTC), Kind: client.EventLinkUp, Text: "link up <to> exit & co"}}
	report.Advice = "Not connectable: ..."
	report.QBittorrent = &client.QBittorrentReport{URL: "http://127.0.0.1:8080", Findings: []string{"lsd: on"}}
	startControl(t, dir, report)
	printed, err := runApp(t, "status", "--state-dir", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	page, err := ui.New(ui.Config{Page: ui.ClientPage, Status: func() ui.Snapshot { return report }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := httptest.NewServer(page.Handler(ctx))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(served) != printed {
		t.Fatalf("/api/status serves\n%s\n'status --json' prints\n%s", served, printed)
	}
}

// TestUIRefusedBeyondLoopback: a status page others could reach without a
// password stops the command at once, with one line, before anything is
// created.
func TestUIRefusedBeyondLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"connect", "--exit", strings.Repeat("a", 52) + "@127.0.0.1:1", "--socks", "127.0.0.1:0", "--http", "off", "--ui", "0.0.0.0:8119"},
		{"exit", "--listen", "127.0.0.1:0", "--ui", ":8119"},
	} {
		t.Run(args[0], func(t *testing.T) {
			dir := t.TempDir()
			_, errOut, code := run(t, append(args, "--state-dir", filepath.Join(dir, "state"))...)
			line := strings.TrimSpace(errOut)
			if code != 1 || strings.Contains(line, "\n") || !strings.Contains(line, "--ui-pass") {
				t.Fatalf("exit code %d, stderr %q: want 1 and one line naming --ui-pass", code, errOut)
			}
			if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
				t.Errorf("the state dir was created although the command was refused")
			}
		})
	}
	// The same address with a password is accepted.
	if err := checkUIArgs(t, "--ui", "0.0.0.0:8119", "--ui-pass", "s3cret"); err != nil {
		t.Errorf("--ui 0.0.0.0:8119 with --ui-pass refused: %v", err)
	}
}

// checkUIArgs runs checkUI on the connect command's flags.
func checkUIArgs(t *testing.T, args ...string) error {
	t.Helper()
	cmd := connectCommand()
	var checked error
	cmd.Action = func(_ context.Context, c *cli.Command) error { checked = checkUI(c); return nil }
	if err := cmd.Run(t.Context(), append([]string{"connect"}, args...)); err != nil {
		return err
	}
	return checked
}
