package nat

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// errNoDefaultRoute: the routing table has no IPv4 default route.
var errNoDefaultRoute = errors.New("no IPv4 default route")

// maxRouteTable bounds what is read of /proc/net/route.
const maxRouteTable = 1 << 20

// defaultGateway reads the IPv4 default gateway from /proc/net/route.
func defaultGateway() (netip.Addr, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find default gateway: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(&limitedReader{r: f, n: maxRouteTable}); err != nil {
		return netip.Addr{}, fmt.Errorf("find default gateway: read /proc/net/route: %w", err)
	}
	gw, err := parseRoutes(buf.Bytes())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find default gateway: %w", err)
	}
	return gw, nil
}

// parseRoutes returns the gateway of the IPv4 default route with the lowest
// metric in the text of /proc/net/route.
func parseRoutes(table []byte) (netip.Addr, error) {
	const (
		rtfUp      = 0x1
		rtfGateway = 0x2
	)
	var best netip.Addr
	bestMetric := uint64(math.MaxUint64)
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Buffer(make([]byte, 0, 512), 4096)
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) < 8 {
			continue // the header, or not a route
		}
		if f[1] != "00000000" || f[7] != "00000000" {
			continue // not a default route
		}
		flags, err := strconv.ParseUint(f[3], 16, 16)
		if err != nil || flags&(rtfUp|rtfGateway) != rtfUp|rtfGateway {
			continue
		}
		metric, err := strconv.ParseUint(f[6], 10, 32)
		if err != nil {
			continue
		}
		gw, ok := parseRouteAddr(f[2])
		if !ok || !usableGateway(gw) {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = gw, metric
		}
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("read routing table: %w", err)
	}
	if !best.IsValid() {
		return netip.Addr{}, errNoDefaultRoute
	}
	return best, nil
}

// parseRouteAddr reads an address as /proc/net/route writes it: 8 hex
// digits of a 32-bit word in the host's (little-endian) byte order.
func parseRouteAddr(s string) (netip.Addr, bool) {
	if len(s) != 8 {
		return netip.Addr{}, false
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]}), true
}

// usableGateway reports whether a may be spoken to as a gateway: an IPv4
// unicast address that is not loopback or unspecified.
func usableGateway(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// localAddrFor returns this host's address on the way to gw (no packet is
// sent: connecting a UDP socket only chooses the route).
func localAddrFor(gw netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, natpmpPort)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find local address towards %v: %w", gw, err)
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if !a.Is4() || a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("find local address towards %v: got %v", gw, a)
	}
	return a, nil
}

// limitedReader reads at most n bytes, then fails: a bounded read that does
// not silently truncate.
type limitedReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

var errTooLarge = errors.New("answer too large")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// One more byte tells a body of exactly n bytes from a larger one.
		var one [1]byte
		k, err := l.r.Read(one[:])
		if k > 0 {
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.r.Read(p)
	l.n -= int64(k)
	return k, err
}
