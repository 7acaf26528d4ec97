//go:build !linux

package udpbatch

import (
	"net"
	"net/netip"
)

// sys sends and receives one datagram per system call.
type sys struct{ c *net.UDPConn }

func (s *sys) init(c *net.UDPConn, max int) error {
	s.c = c
	return nil
}

func (s *sys) read(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	m := &ms[0]
	n, addr, err := s.c.ReadFromUDPAddrPort(m.Buf)
	if err != nil {
		return 0, err
	}
	// Callers give the first message room for any datagram.
	m.N, m.Trunc = n, false
	m.Addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return 1, nil
}

func (s *sys) write(ms []Message) (int, error) {
	for i := range ms {
		if _, err := s.c.WriteToUDPAddrPort(ms[i].Buf, ms[i].Addr); err != nil {
			return i, err
		}
	}
	return len(ms), nil
}

// writeNow may wait here: the net package offers no send that fails at
// once on a full buffer.
func (s *sys) writeNow(ms []Message) (int, error) { return s.write(ms) }
