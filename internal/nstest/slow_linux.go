package nstest

import (
	"net/netip"
	"os/exec"
	"testing"
)

// The addresses of SlowNeighbour's network: this host's on the slow link,
// and the neighbour's, which no host holds.
var (
	SlowLocal     = netip.MustParseAddr("10.9.0.1")
	SlowNeighbour = netip.MustParseAddr("10.9.0.2")
)

// SlowLink is Isolated with a slow link out: the namespace's host has
// SlowLocal on a veth, and what it sends to SlowNeighbour leaves by that
// veth through a token bucket of rate (tc's units: "1mbit", "8bit"), which
// holds the datagrams against their sockets' send buffers until they fill.
// setup are ip commands run first. Outside the namespace it reports false,
// as Isolated does, and the caller returns.
func SlowLink(t *testing.T, rate string, setup ...string) bool {
	t.Helper()
	setup = append(setup,
		"link add va type veth peer name vb",
		"addr add "+SlowLocal.String()+"/24 dev va",
		"link set va up",
		"link set vb up",
		// A neighbour that is not this host's, so datagrams leave by va.
		"neigh add "+SlowNeighbour.String()+" lladdr 02:00:00:00:00:02 dev va",
	)
	if !Isolated(t, setup...) {
		return false
	}
	if out, err := exec.Command("tc", "qdisc", "add", "dev", "va", "root", "tbf",
		"rate", rate, "burst", "10k", "limit", "100mb").CombinedOutput(); err != nil {
		t.Fatalf("tc: %v\n%s", err, out)
	}
	return true
}
