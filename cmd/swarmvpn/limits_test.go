package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

func TestParseBytes(t *testing.T) {
	good := map[string]int64{
		"0": 0, "65536": 65536, "500k": 500_000, "500K": 500_000, "10M": 10_000_000, "10MB": 10_000_000,
		"1.5M": 1_500_000, "2MiB": 2 << 20, "64mib": 64 << 20, "1GiB": 1 << 30, "3G": 3_000_000_000,
		"10M/s": 10_000_000, " 8 KiB ": 8 << 10, "100B": 100,
	}
	for in, want := range good {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "ten", "-1", "10X", "1e3", "10 M M", "1.2.3k", "99999999999GiB", "/s"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseRate(t *testing.T) {
	good := map[string]int64{"0": 0, "0k": 0, "0.0": 0, "1k": 1000, "500k": 500_000, "10M/s": 10_000_000}
	for in, want := range good {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	// A rate that is not zero but too small to be one is an error, never
	// silently no limit.
	for _, in := range []string{"0.5", "0.4b", "1", "999", "0.9k", "ten"} {
		if got, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) = %d, want an error", in, got)
		}
	}
}

func newPeerID(t *testing.T) link.PeerID {
	t.Helper()
	id, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id.ID()
}

func TestAllowList(t *testing.T) {
	a, b, c := newPeerID(t), newPeerID(t), newPeerID(t)
	file := filepath.Join(t.TempDir(), "clients")
	os.WriteFile(file, []byte("# the team\n\n"+a.String()+"\n  "+b.String()+"  # laptop\n"), 0o600)
	al := &allowList{static: map[link.PeerID]bool{c: true}, file: file}
	allow, n, err := al.load()
	if err != nil || n != 3 {
		t.Fatalf("load: %d IDs, %v; want 3", n, err)
	}
	if !allow(a) || !allow(b) || !allow(c) || allow(newPeerID(t)) {
		t.Fatal("the union of file and flags is not what is allowed")
	}

	for _, bad := range []struct{ text, want string }{
		{a.String() + "\nnot-a-peer-id\n", "line 2"},
		{"# ok\n" + a.String() + "x\n", "line 2"},
		{a.String() + " " + b.String() + "\n", "line 1"},
	} {
		os.WriteFile(file, []byte(bad.text), 0o600)
		_, _, err := al.load()
		if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("load(%q): %v; want an error naming %s and %s", bad.text, err, file, bad.want)
		}
	}
	al.file = filepath.Join(t.TempDir(), "missing")
	if _, _, err := al.load(); err == nil || !strings.Contains(err.Error(), "allow-clients-file") {
		t.Errorf("missing file: %v", err)
	}
}

// TestBinaryAllowListReload: the exit reads --allow-clients-file at start,
// refuses to start on a malformed one, re-reads it on SIGHUP, and keeps the
// old list when the new file is bad.
func TestBinaryAllowListReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "clients")
	a, b := newPeerID(t), newPeerID(t)
	os.WriteFile(file, []byte("bogus\n"), 0o600)
	_, errOut, code := run(t, "exit", "--state-dir", dir, "--listen", "127.0.0.1:0", "--allow-clients-file", file)
	if code == 0 || !strings.Contains(errOut, file+" line 1") {
		t.Fatalf("malformed file at start: exit %d, %q; want an error naming the file and line", code, errOut)
	}

	os.WriteFile(file, []byte(a.String()+"\n"), 0o600)
	exit := start(t, "exit", "--state-dir", dir, "--listen", "127.0.0.1:0", "--allow-clients-file", file,
		"--allow-client", b.String(), "--log-format", "json")
	ready := exit.waitLog(t, "exit ready")
	if ready["allowed_clients"] != float64(2) {
		t.Fatalf("exit ready: %v allowed clients, want 2", ready["allowed_clients"])
	}
	os.WriteFile(file, []byte(a.String()+"\n"+newPeerID(t).String()+"\n# "+newPeerID(t).String()+"\n"), 0o600)
	exit.cmd.Process.Signal(syscall.SIGHUP)
	if m := exit.waitLog(t, "allow-list reloaded"); m["allowed_clients"] != float64(3) {
		t.Fatalf("after SIGHUP: %v allowed clients, want 3", m["allowed_clients"])
	}
	os.WriteFile(file, []byte(a.String()+"\nbroken\n"), 0o600)
	exit.cmd.Process.Signal(syscall.SIGHUP)
	if m := exit.waitLog(t, "allow-list not reloaded; the old one stays in force"); !strings.Contains(m["err"].(string), "line 2") {
		t.Fatalf("bad file on SIGHUP: %v", m)
	}
	// Still running, and the next good file is taken.
	os.WriteFile(file, []byte(a.String()+"\n"), 0o600)
	exit.cmd.Process.Signal(syscall.SIGHUP)
	if m := exit.waitLog(t, "allow-list reloaded"); m["allowed_clients"] != float64(2) {
		t.Fatalf("after fixing the file: %v allowed clients, want 2", m["allowed_clients"])
	}
	if code := exit.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}
