package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
)

// movingRouter is a home router in front of the exit that maps port p to
// p+offset, and forgets its mappings when moved, as one that restarted and
// found the old external ports taken. It has no public address, so the
// exit publishes none and the client dials only loopback.
type movingRouter struct {
	mu      sync.Mutex
	offset  uint16
	mapped  map[string]uint16
	changes chan struct{}
}

var _ exit.PortMapper = (*movingRouter)(nil)

func (r *movingRouter) Add(_ context.Context, proto string, internal uint16) (uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := fmt.Sprintf("%s/%d", proto, internal)
	if _, ok := r.mapped[k]; !ok {
		r.mapped[k] = internal + r.offset
	}
	return r.mapped[k], nil
}

func (r *movingRouter) Remove(_ context.Context, proto string, internal uint16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.mapped, fmt.Sprintf("%s/%d", proto, internal))
	return nil
}

func (r *movingRouter) ExternalAddr() (netip.Addr, error) {
	return netip.Addr{}, errors.New("no public address in this test")
}

func (r *movingRouter) Changes() <-chan struct{} { return r.changes }

// move makes every mapping again at p+offset, and signals it.
func (r *movingRouter) move(offset uint16) {
	r.mu.Lock()
	r.offset = offset
	clear(r.mapped)
	r.mu.Unlock()
	r.changes <- struct{}{}
}

// TestForwardPortMoved: the exit's router moves the lent port to another
// external port; the exit tells the client on the forward stream, and the
// client announces the new port (status, port file, OnPort) as it does a
// new forward's, on the same forward.
func TestForwardPortMoved(t *testing.T) {
	router := &movingRouter{offset: 7, mapped: map[string]uint16{}, changes: make(chan struct{}, 1)}
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
	router.move(9)
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
