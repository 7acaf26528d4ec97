package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

// TestIDForExit: 'swarmvpn id --for-exit' prints the key a client presents
// to that exit: not its own, the same each time, another for another exit.
func TestIDForExit(t *testing.T) {
	key := filepath.Join(t.TempDir(), "client.key")
	run(t, "keygen", "--key", key)
	a, b := newPeerID(t), newPeerID(t)
	own, _, _ := run(t, "id", "--key", key)
	forA, _, code := run(t, "id", "--key", key, "--for-exit", a.String())
	againA, _, _ := run(t, "id", "--key", key, "--for-exit", a.String()+"@198.51.100.7:443")
	forB, _, _ := run(t, "id", "--key", key, "--for-exit", b.String())
	if code != 0 || forA != againA || forA == own || forA == forB {
		t.Fatalf("own %q, for a %q (again %q), for b %q", own, forA, againA, forB)
	}
	id, err := link.LoadIdentity(key)
	if err != nil {
		t.Fatal(err)
	}
	if want := id.ForExit(a).ID().String(); strings.TrimSpace(forA) != want {
		t.Fatalf("id --for-exit printed %q, want %s", forA, want)
	}
	if _, errOut, code := run(t, "id", "--key", key, "--for-exit", "bogus"); code == 0 || !strings.Contains(errOut, "--for-exit") {
		t.Fatalf("bad --for-exit: exit %d, %q", code, errOut)
	}
	if _, errOut, code := run(t, "connect", "--relay", a.String()+"@198.51.100.7:443", "--exit", b.String()+"@198.51.100.8:443",
		"--mdns=false", "--state-dir", t.TempDir()); code == 0 || !strings.Contains(errOut, "--hops 2") {
		t.Fatalf("--relay without --hops 2: exit %d, %q", code, errOut)
	}
	if _, errOut, code := run(t, "connect", "--hops", "3", "--exit", b.String()+"@198.51.100.8:443",
		"--mdns=false", "--state-dir", t.TempDir()); code == 0 || !strings.Contains(errOut, "--hops 3") {
		t.Fatalf("--hops 3: exit %d, %q", code, errOut)
	}
}
