package portfwd

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"time"
)

// Target is the local application a forwarded port leads to, such as the
// torrent client's listen port.
type Target struct {
	// Addr is the local address to dial, e.g. 127.0.0.1:6881.
	Addr string
	// DialTimeout bounds each dial. Default 5s.
	DialTimeout time.Duration
}

// Dial connects to the target on behalf of remote, a peer that connected to
// the forwarded port at the exit. On Linux, where all of 127.0.0.0/8 is
// local, the connection comes from a loopback address derived from remote,
// so the application can tell peers apart (and ban one) by address.
func (t Target) Dial(ctx context.Context, remote netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: t.DialTimeout}
	if d.Timeout == 0 {
		d.Timeout = 5 * time.Second
	}
	if runtime.GOOS == "linux" && isLoopbackTarget(t.Addr) {
		d.LocalAddr = &net.TCPAddr{IP: LoopbackFor(remote.Addr()).AsSlice()}
		conn, err := d.DialContext(ctx, "tcp", t.Addr)
		if err == nil || !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return conn, err
		}
		d.LocalAddr = nil // a kernel without the whole /8 on lo
	}
	return d.DialContext(ctx, "tcp", t.Addr)
}

func isLoopbackTarget(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Is4() && ap.Addr().IsLoopback()
}

// LoopbackFor maps a remote peer's address to an address in 127.0.0.0/8:
// the low three bytes of an IPv4 address, or three bytes of a hash of an
// IPv6 one. 127.0.0.1 itself and the /8's network and broadcast addresses
// are avoided.
func LoopbackFor(remote netip.Addr) netip.Addr {
	var b [3]byte
	if a := remote.Unmap(); a.Is4() {
		v := a.As4()
		copy(b[:], v[1:])
	} else {
		h := sha256.Sum256(a.AsSlice())
		copy(b[:], h[:3])
	}
	switch b {
	case [3]byte{0, 0, 0}, [3]byte{0, 0, 1}, [3]byte{255, 255, 255}:
		b[2] ^= 0x80
	}
	return netip.AddrFrom4([4]byte{127, b[0], b[1], b[2]})
}
