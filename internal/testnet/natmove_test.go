package testnet

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestForwardPortMoved: the exit's router moves the lent port to another
// external port; the exit tells the client on the forward stream, and the
// client announces the new port (status, port file, OnPort) as it does a
// new forward's, on the same forward.
func TestForwardPortMoved(t *testing.T) {
	// A router with no public address: the exit publishes none, and the
	// client dials only loopback. Moved, it makes every mapping again at
	// the new offset, as one that restarted and found the old ports taken.
	router := newRouter("", 7)
	app := StartTarget(t, "127.0.0.1:0", func(c net.Conn) { c.Close() })
	portFile := filepath.Join(t.TempDir(), "port")
	fr := forwardRange()
	tp := Start(t, Options{ForwardPorts: fr, ForwardTarget: app.Addr, NAT: router, PortFile: portFile})
	first := waitPort(t, tp.Ports)
	lent := first - 7
	if lent < fr.Lo || lent > fr.Hi {
		t.Fatalf("announced port %d: not a port of %d-%d moved by 7", first, fr.Lo, fr.Hi)
	}
	inFile := func() string {
		b, _ := os.ReadFile(portFile)
		return strings.TrimSpace(string(b))
	}
	if got := inFile(); got != fmt.Sprint(first) {
		t.Fatalf("port file %q, want %d", got, first)
	}
	router.change("", 9)
	if moved := waitPort(t, tp.Ports); moved != lent+9 {
		t.Fatalf("announced %d after the move, want %d", moved, lent+9)
	}
	if st := tp.Pool.Status(); st.ForwardedPort != lent+9 {
		t.Fatalf("pool status %+v, want port %d", st, lent+9)
	}
	// The client writes the port file before it calls OnPort.
	if got := inFile(); got != fmt.Sprint(lent+9) {
		t.Fatalf("port file %q, want %d", got, lent+9)
	}
	if f := tp.Exit.Report().Public.Forwards; len(f) != 1 || f[0].Port != lent || f[0].External != lent+9 {
		t.Fatalf("exit report %+v", f)
	}
}
