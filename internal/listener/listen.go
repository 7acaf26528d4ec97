package listener

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
)

// Open opens a TCP listener on addr. setting names where the address came
// from ("--socks"), so that an error can say what to change.
func Open(addr, setting string) (net.Listener, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%s %q: want HOST:PORT, e.g. %s %s", setting, addr, setting, example(addr))
	}
	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return ln, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("cannot listen on %s: the address is already in use (is another swarmvpn or proxy running?); choose another with %s", addr, setting)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("cannot listen on %s: permission denied (ports below 1024 need privileges); choose another with %s", addr, setting)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("cannot listen on %s: no interface has that address; fix %s", addr, setting)
	}
	return nil, fmt.Errorf("cannot listen on %s (%s): %v", addr, setting, err)
}

// example is a listen address like the malformed addr: on loopback, with
// addr's port when addr is a bare port number.
func example(addr string) string {
	if n, err := strconv.ParseUint(addr, 10, 16); err == nil && n > 0 {
		return "127.0.0.1:" + addr
	}
	return "127.0.0.1:PORT"
}

// Loopback reports whether a listen address is on loopback only: a
// loopback IP or "localhost". An empty host means every interface. A
// malformed address counts as loopback: Open reports it.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// CloseAll closes listeners opened before a later step failed, so nothing
// is left half-started. Nil entries are skipped.
func CloseAll(lns ...net.Listener) {
	for _, ln := range lns {
		if ln != nil {
			ln.Close()
		}
	}
}
