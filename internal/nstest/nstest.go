// Package nstest runs a test inside a network namespace of its own, so that
// what it sends (multicast, odd routes, listeners on every address) never
// reaches the host's network. It is for tests only and imports nothing of
// swarmvpn.
package nstest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// env marks a test binary re-run inside a network namespace of its own.
const env = "SWARMVPN_IN_NETNS"

// Isolated reports whether the test runs inside its own network namespace,
// after running the ip commands of setup there. Outside, it re-runs this
// test in a fresh namespace (unshare -n), checks that it passed there, and
// reports false: the caller then returns. Tests that multicast or
// need odd routes run only there, so that nothing reaches the host's
// network.
//
// Without unshare or the right to use it, the test is skipped, unless CI is
// set: then it fails.
func Isolated(t *testing.T, setup ...string) bool {
	t.Helper()
	if os.Getenv(env) != "" {
		for _, cmd := range setup {
			if out, err := exec.Command("ip", strings.Fields(cmd)...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v\n%s", cmd, err, out)
			}
		}
		return true
	}
	unavailable := func(why string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("network namespaces needed, and %s", why)
		}
		t.Skipf("needs a network namespace of its own, and %s (run as root; in CI it must not skip)", why)
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(tool + " is not installed")
		}
	}
	cmd := exec.CommandContext(t.Context(), "unshare", "-n", "env", env+"=1",
		os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1", "-test.timeout=2m")
	out, err := cmd.CombinedOutput()
	if err != nil && bytes.HasPrefix(out, []byte("unshare: ")) {
		unavailable("unshare -n failed: " + strings.TrimSpace(string(out)))
	}
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("in a network namespace: %v\n%s", err, out)
	}
	return false
}
