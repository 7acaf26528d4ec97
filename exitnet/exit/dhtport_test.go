package exit

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/discovery/mainline"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// orderLender lends the first of ports that try accepts.
type orderLender struct{ ports []uint16 }

func (l orderLender) Acquire(_ link.PeerID, _ netip.Addr, _ uint16, try func(uint16) error) (uint16, error) {
	var err error
	for _, p := range l.ports {
		if err = try(p); err == nil {
			return p, nil
		}
	}
	return 0, err
}
func (orderLender) Release(link.PeerID, uint16, uint64) {}
func (l orderLender) Free() int                         { return len(l.ports) }
func (l orderLender) Range() (lo, hi uint16)            { return l.ports[0], l.ports[len(l.ports)-1] }

// TestForwardNotOnDHTPort: the exit's DHT socket's UDP port, which may fall
// in the forwarded range, is not lent: the lease's end would delete the
// router's UDP mapping of it, which the DHT node needs.
func TestForwardNotOnDHTPort(t *testing.T) {
	// The DHT socket's port, held here so that the node itself never
	// opens it (a node stopped mid-bootstrap leaves goroutines behind):
	// the port the exit is configured with is its DHT port all the same.
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dhtPort := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	_, portText, _ := net.SplitHostPort(restartableAddr(t))
	p, _ := strconv.Atoi(portText)
	other := uint16(p)
	m := newFakeMapper("11.7.0.1", 7)
	_, addr, _ := serveNAT(t, Config{NAT: m, Ports: orderLender{[]uint16{dhtPort, other}},
		DHT: &DHTConfig{Node: mainline.Config{Listen: conn.LocalAddr().String(), Bootstrap: []string{"127.0.0.1:1"},
			AllowPrivate: true}, SeqFile: t.TempDir() + "/seq"}})
	sess, st := linkStream(t, link.Config{Identity: newIdentity(t)}, addr)
	defer sess.Close()
	resp, err := wire.Call(t.Context(), st, wire.Request{Kind: wire.KindForward}, 10*time.Second)
	if err != nil || resp.Status != wire.StatusOK {
		t.Fatalf("forward: %v %v", resp.Status, err)
	}
	if resp.Bound.Port == dhtPort+7 {
		t.Fatalf("lent the DHT socket's port %d", dhtPort)
	}
	if resp.Bound.Port != other+7 {
		t.Fatalf("told port %d, want %d", resp.Bound.Port, other+7)
	}
}
