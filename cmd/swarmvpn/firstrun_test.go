package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The first minutes of a new user: every mistake is one line that says
// what to do, and paths mean what they say.

func TestExpandHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	tests := []struct{ in, want, err string }{
		{"~", home, ""},
		{"~/", home, ""},
		{"~/.config/swarmvpn", filepath.Join(home, ".config/swarmvpn"), ""},
		{"$HOME/sv", filepath.Join(home, "sv"), ""},
		{"${HOME}/sv", filepath.Join(home, "sv"), ""},
		{"/var/lib/swarmvpn", "/var/lib/swarmvpn", ""},
		{"relative/~", "relative/~", ""},
		{"$HOMEDIR/x", "$HOMEDIR/x", ""},
		{"~bob/x", "", "only ~/"},
	}
	for _, tt := range tests {
		got, err := expandHome(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("expandHome(%q) = %q, %v; want an error saying %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("expandHome(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestPathsExpandedFromEverySource: ~ and $HOME in a path setting are
// expanded whether it comes from a flag, the environment or a config file
// (configs/client.conf has users uncomment "state-dir = ~/...").
func TestPathsExpandedFromEverySource(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	conf := filepath.Join(home, "client.conf")
	os.WriteFile(conf, []byte("state-dir = ~/.config/swarmvpn\nport-file = $HOME/port\n"), 0o600)

	got, err := runCmd(t, []string{"connect", "--config", "~/client.conf"}, "state-dir", "port-file")
	if err != nil {
		t.Fatal(err)
	}
	if got["state-dir"] != filepath.Join(home, ".config/swarmvpn") || got["port-file"] != filepath.Join(home, "port") {
		t.Errorf("from the config file: %v", got)
	}
	got, err = runCmd(t, []string{"exit", "--state-dir", "~/exit", "--key", "${HOME}/k", "--allow-clients-file", "~/allowed"},
		"state-dir", "key", "allow-clients-file")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"state-dir": filepath.Join(home, "exit"), "key": filepath.Join(home, "k"),
		"allow-clients-file": filepath.Join(home, "allowed")}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("from flags: %s = %v, want %v", k, got[k], v)
		}
	}
	t.Setenv("SWARMVPN_STATE_DIR", "~/env")
	got, err = runCmd(t, []string{"status"}, "state-dir")
	if err != nil || got["state-dir"] != filepath.Join(home, "env") {
		t.Errorf("from the environment: %v, %v", got, err)
	}
	if _, err := runCmd(t, []string{"connect", "--state-dir", "~bob/x"}); err == nil || !strings.Contains(err.Error(), "--state-dir") {
		t.Errorf("~bob: %v, want an error naming --state-dir", err)
	}
}

// TestBinaryConfigTilde starts a client whose state dir comes from a
// config file as ~/...: its key lands in the home directory, not in a
// directory named "~".
func TestBinaryConfigTilde(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv(defaultStateDirEnv, "1")
	key := filepath.Join(home, "exit.key")
	out, _, _ := run(t, "keygen", "--key", key)
	conf := filepath.Join(home, "client.conf")
	os.WriteFile(conf, []byte("state-dir = ~/.config/swarmvpn\nsocks = 127.0.0.1:0\nhttp = off\nforward = off\nlog-format = json\n"), 0o600)
	p := start(t, "connect", "--config", conf, "--exit", strings.TrimSpace(out)+"@127.0.0.1:1")
	p.waitLog(t, "client ready")
	if _, err := os.Stat(filepath.Join(home, ".config", "swarmvpn", "client.key")); err != nil {
		t.Errorf("client key not in ~/.config/swarmvpn: %v", err)
	}
	if _, err := os.Stat("~"); err == nil {
		os.RemoveAll("~")
		t.Errorf("a directory named ~ was created in the working directory")
	}
	p.stop(t)
}

func TestBinaryFirstSteps(t *testing.T) {
	dir, keys := t.TempDir(), t.TempDir()
	key := filepath.Join(keys, "exit.key")
	out, _, _ := run(t, "keygen", "--key", key)
	exitID := strings.TrimSpace(out)
	good := exitID + "@127.0.0.1:7843"
	conf := filepath.Join(keys, "bad.conf")
	os.WriteFile(conf, []byte("allow-private = nope\n"), 0o600)
	dur := filepath.Join(keys, "dur.conf")
	os.WriteFile(dur, []byte("udp-idle = 5\n"), 0o600)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"keygen without key", []string{"keygen"}, "name the file to write with --key FILE"},
		{"id before any key", []string{"id", "--state-dir", dir}, "no client key in " + dir + " yet"},
		{"id of a missing exit key", []string{"id", "--state-dir", dir, "--role", "exit"}, "'swarmvpn exit' creates it"},
		{"id bad role", []string{"id", "--state-dir", dir, "--role", "relay"}, "want client or exit"},
		{"unknown flag", []string{"connect", "--frobnicate"}, "see 'swarmvpn connect --help'"},
		{"unknown command", []string{"frobnicate"}, `no command "frobnicate"`},
		{"bool in config", []string{"exit", "--state-dir", dir, "--config", conf}, `allow-private = "nope": want true or false`},
		{"duration in config", []string{"exit", "--state-dir", dir, "--config", dur}, `udp-idle = "5": want a duration`},
		{"bare http port", []string{"connect", "--key", key, "--exit", good, "--socks", "127.0.0.1:0", "--http", "8119"},
			"--http 127.0.0.1:8119"},
		{"exit port not a number", []string{"connect", "--state-dir", dir, "--exit", exitID + "@127.0.0.1:baz"}, `port "baz"`},
		{"exit port too large", []string{"connect", "--state-dir", dir, "--exit", exitID + "@127.0.0.1:99999"}, "1 to 65535"},
		{"known exit port", []string{"exit", "--state-dir", dir, "--known-exit", exitID + "@127.0.0.1:0"}, "--known-exit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, errOut, code := run(t, tt.args...)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if stdout != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "swarmvpn: ") || !strings.Contains(errOut, tt.want) {
				t.Fatalf("stdout %q, stderr %q: want one line on stderr mentioning %q", stdout, errOut, tt.want)
			}
		})
	}

	// A trailing space pasted with the address is no error.
	p := start(t, "connect", "--state-dir", filepath.Join(dir, "c"), "--exit", good+" ", "--socks", "127.0.0.1:0",
		"--http", "off", "--forward", "off", "--log-format", "json")
	p.waitLog(t, "client ready")
	p.stop(t)

	// id reads the state dir's client key by default, and the exit's with --role exit.
	out, _, code := run(t, "id", "--state-dir", filepath.Join(dir, "c"))
	clientKey := filepath.Join(dir, "c", "client.key")
	want, _, _ := run(t, "id", "--key", clientKey)
	if code != 0 || out != want || len(strings.TrimSpace(out)) != 52 {
		t.Errorf("id: exit %d, %q; want %q", code, out, want)
	}
	os.Rename(key, filepath.Join(dir, "c", "exit.key"))
	out, _, code = run(t, "id", "--state-dir", filepath.Join(dir, "c"), "--role", "exit")
	if code != 0 || out != exitID+"\n" {
		t.Errorf("id --role exit: exit %d, %q; want %q", code, out, exitID)
	}
}

func TestBinaryVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, errOut, code := run(t, args...)
		if code != 0 || out != "swarmvpn version dev\n" || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

// TestBinaryStateDirLocked: a second client, or a second exit, on a state
// dir in use stops at once with one line naming the other's PID; a client
// and an exit may share one.
func TestBinaryStateDirLocked(t *testing.T) {
	dir := t.TempDir()
	exitProc := start(t, "exit", "--state-dir", dir, "--listen", "127.0.0.1:0", "--log-format", "json")
	exitProc.waitLog(t, "exit ready")
	exitAddr := <-exitProc.stdout
	clientProc := start(t, "connect", "--state-dir", dir, "--exit", exitAddr, "--socks", "127.0.0.1:0",
		"--http", "off", "--forward", "off", "--log-format", "json")
	clientProc.waitLog(t, "client ready")

	tests := []struct {
		name string
		args []string
		pid  int
	}{
		{"second client", []string{"connect", "--state-dir", dir, "--exit", exitAddr, "--socks", "127.0.0.1:0", "--http", "off"},
			clientProc.cmd.Process.Pid},
		{"second exit", []string{"exit", "--state-dir", dir, "--listen", "127.0.0.1:0"}, exitProc.cmd.Process.Pid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, errOut, code := run(t, tt.args...)
			want := fmt.Sprintf("the state dir %s is in use by another 'swarmvpn %s' (pid %d)", dir, tt.args[0], tt.pid)
			if code != 1 || stdout != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want one line saying %q", code, stdout, errOut, want)
			}
		})
	}
	clientProc.stop(t)
	// Once the first has stopped, the state dir is free again.
	again := start(t, "connect", "--state-dir", dir, "--exit", exitAddr, "--socks", "127.0.0.1:0",
		"--http", "off", "--forward", "off", "--log-format", "json")
	again.waitLog(t, "client ready")
	again.stop(t)
	exitProc.stop(t)
}
