package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"
)

func TestParseConfig(t *testing.T) {
	in := "# comment\n\n  listen = 0.0.0.0:7843  \nrule = allow 10.0.0.0/8\nrule=deny 0.0.0.0/0 25\nname = \"quoted value\"\nempty =\n"
	got, err := parseConfig(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []setting{
		{3, "listen", "0.0.0.0:7843"},
		{4, "rule", "allow 10.0.0.0/8"},
		{5, "rule", "deny 0.0.0.0/0 25"},
		{6, "name", "quoted value"},
		{7, "empty", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"listen 0.0.0.0:1", "= value", strings.Repeat("x", 70<<10)} {
		if _, err := parseConfig(strings.NewReader(bad)); err == nil {
			t.Errorf("parseConfig(%.30q) accepted", bad)
		}
	}
}

// runCmd runs the app with args, capturing what the command would do
// instead of running it: the final values of the named flags.
func runCmd(t *testing.T, args []string, names ...string) (map[string]any, error) {
	t.Helper()
	app := newApp()
	got := map[string]any{}
	for _, c := range app.Commands {
		c.Action = func(_ context.Context, cmd *cli.Command) error {
			for _, n := range names {
				got[n] = cmd.Value(n)
			}
			return nil
		}
	}
	app.Writer, app.ErrWriter = &bytes.Buffer{}, &bytes.Buffer{}
	err := app.Run(t.Context(), append([]string{"swarmvpn"}, args...))
	return got, err
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "exit.conf")
	os.WriteFile(conf, []byte("listen = 127.0.0.1:9000\nrule = allow 10.200.0.0/16\nrule = deny 0.0.0.0/0 6000-7000\nallow-private = true\n"), 0o600)

	got, err := runCmd(t, []string{"exit", "--config", conf}, "listen", "rule", "allow-private")
	if err != nil {
		t.Fatal(err)
	}
	if got["listen"] != "127.0.0.1:9000" || got["allow-private"] != true ||
		!reflect.DeepEqual(got["rule"], []string{"allow 10.200.0.0/16", "deny 0.0.0.0/0 6000-7000"}) {
		t.Fatalf("from file: %v", got)
	}

	t.Setenv("SWARMVPN_LISTEN", "127.0.0.1:9001")
	got, _ = runCmd(t, []string{"exit", "--config", conf}, "listen")
	if got["listen"] != "127.0.0.1:9001" {
		t.Fatalf("environment should beat the file: %v", got["listen"])
	}
	got, _ = runCmd(t, []string{"exit", "--config", conf, "--listen", "127.0.0.1:9002"}, "listen")
	if got["listen"] != "127.0.0.1:9002" {
		t.Fatalf("flag should beat environment and file: %v", got["listen"])
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.conf")
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	tests := []struct{ body, want string }{
		{"lissten = 1.2.3.4:5\n", `unknown setting "lissten"`},
		{"allow-private = perhaps\n", "line 1"},
		{"dial-timeout = 10\n", "dial-timeout"},
		{"just words\n", `want "name = value"`},
	}
	for _, tt := range tests {
		_, err := runCmd(t, []string{"exit", "--config", write(tt.body)})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("config %q: error %v, want it to mention %q", tt.body, err, tt.want)
		}
	}
	if _, err := runCmd(t, []string{"exit", "--config", filepath.Join(dir, "missing.conf")}); err == nil ||
		!strings.Contains(err.Error(), "missing.conf") {
		t.Errorf("missing config file: %v", err)
	}
}

// TestExampleConfigs parses every file in configs/ with the command it is for.
func TestExampleConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.conf")
	if len(files) < 2 {
		t.Fatalf("found %d example configs, want at least 2", len(files))
	}
	for _, f := range files {
		role := map[string]string{"exit.conf": "exit", "client.conf": "connect"}[filepath.Base(f)]
		if role == "" {
			t.Errorf("%s: no command known for this example", f)
			continue
		}
		got, err := runCmd(t, []string{role, "--config", f}, "log-level")
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if got["log-level"] != "info" {
			t.Errorf("%s: log-level %v", f, got["log-level"])
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, p := range []string{"../../configs/exit.conf", "../../configs/client.conf"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("a = b\n# c\nd=\"e\"\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		settings, err := parseConfig(bytes.NewReader(in))
		if err != nil {
			return
		}
		for _, s := range settings {
			if s.name == "" || strings.ContainsAny(s.name, "\n") || s.line <= 0 {
				t.Fatalf("bad setting %+v", s)
			}
		}
	})
}
