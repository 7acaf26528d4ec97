package udpbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr: Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// sys holds the kernel's view of a batch, allocated once by init.
type sys struct {
	c   *net.UDPConn
	rc  syscall.RawConn
	v6  bool // the socket is AF_INET6: IPv4 destinations are sent mapped
	max int

	rhs   []mmsghdr
	riov  []unix.Iovec
	rname []unix.RawSockaddrInet6
	rn    int           // messages in the call under way
	rgot  int           // what it returned
	rerr  syscall.Errno // and its error
	rfn   func(uintptr) bool

	whs   []mmsghdr
	wiov  []unix.Iovec
	wname []unix.RawSockaddrInet6
	wctl  []byte // a UDP_SEGMENT control message per header
	wrun  []int  // the datagrams each header carries
	wn    int
	wgot  int
	werr  syscall.Errno
	wfn   func(uintptr) bool
	wnow  bool // a full send buffer fails the call instead of waiting

	// gsoBelow: runs of datagrams of fewer bytes each than this go to
	// the kernel as one (UDP_SEGMENT, see gso.go); 0 when the kernel or
	// the route refused it.
	gsoBelow int
}

func (s *sys) init(c *net.UDPConn, max int) error {
	if max < 1 {
		return fmt.Errorf("udpbatch: batch of %d datagrams", max)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("udpbatch: %w", err)
	}
	var fam int
	cerr := rc.Control(func(fd uintptr) {
		var sa unix.Sockaddr
		sa, err = unix.Getsockname(int(fd))
		if _, ok := sa.(*unix.SockaddrInet6); ok {
			fam = unix.AF_INET6
		}
	})
	if err = errors.Join(cerr, err); err != nil {
		return fmt.Errorf("udpbatch: %w", err)
	}
	s.c, s.rc, s.v6, s.max = c, rc, fam == unix.AF_INET6, max
	s.rhs, s.riov, s.rname = make([]mmsghdr, max), make([]unix.Iovec, max), make([]unix.RawSockaddrInet6, max)
	s.whs, s.wiov, s.wname = make([]mmsghdr, max), make([]unix.Iovec, max), make([]unix.RawSockaddrInet6, max)
	s.wctl, s.wrun = make([]byte, max*gsoCmsgSpace), make([]int, max)
	s.gsoBelow = gsoProbe(rc)
	for i := range max {
		s.rhs[i].hdr.Iov = &s.riov[i]
		s.rhs[i].hdr.SetIovlen(1)
		s.whs[i].hdr.Iov = &s.wiov[i]
		s.whs[i].hdr.SetIovlen(1)
	}
	s.rfn, s.wfn = s.recv, s.send
	return nil
}

func (s *sys) recv(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.rhs[0])), uintptr(s.rn), 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	s.rgot, s.rerr = int(n), e
	return true
}

func (s *sys) send(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.whs[0])), uintptr(s.wn), 0, 0, 0)
	if e == unix.EINTR || e == unix.EAGAIN && !s.wnow {
		return false
	}
	s.wgot, s.werr = int(n), e
	return true
}

func (s *sys) read(ms []Message) (int, error) {
	n := min(len(ms), s.max)
	if n == 0 {
		return 0, nil
	}
	for i := range n {
		h := &s.rhs[i]
		buf := ms[i].Buf
		if len(buf) > 0 {
			s.riov[i].Base = &buf[0]
		} else {
			s.riov[i].Base = nil
		}
		s.riov[i].SetLen(len(buf))
		h.hdr.Name = (*byte)(unsafe.Pointer(&s.rname[i]))
		h.hdr.Namelen = unix.SizeofSockaddrInet6
		h.hdr.Flags = 0
		h.len = 0
	}
	s.rn = n
	if err := s.rc.Read(s.rfn); err != nil {
		return 0, err
	}
	if s.rerr != 0 {
		return 0, os.NewSyscallError("recvmmsg", s.rerr)
	}
	for i := range s.rgot {
		h := &s.rhs[i]
		m := &ms[i]
		m.N = min(int(h.len), len(m.Buf))
		m.Trunc = h.hdr.Flags&unix.MSG_TRUNC != 0
		m.Addr = sockaddrAddr(&s.rname[i])
	}
	// The kernel wrote into the buffers behind the race detector's back.
	clearRefs(s.riov[:n])
	return s.rgot, nil
}

func (s *sys) writeNow(ms []Message) (int, error) {
	s.wnow = true
	defer func() { s.wnow = false }()
	return s.write(ms)
}

func (s *sys) write(ms []Message) (int, error) {
	sent := 0
	for sent < len(ms) {
		if ms[sent].Addr.Addr().Zone() != "" {
			// A scoped destination needs its interface's index, which
			// the net package looks up.
			if _, err := s.c.WriteToUDPAddrPort(ms[sent].Buf, ms[sent].Addr); err != nil {
				return sent, err
			}
			sent++
			continue
		}
		n := min(len(ms)-sent, s.max)
		for i := range n {
			if ms[sent+i].Addr.Addr().Zone() != "" {
				n = i
				break
			}
		}
		// Headers: one per datagram, or one per run of datagrams that
		// the kernel may cut itself (gsoRun).
		k := 0
		for i := 0; i < n; {
			m := &ms[sent+i]
			nl, ok := s.putAddr(&s.wname[k], m.Addr)
			if !ok {
				if i > 0 { // send those before it first
					n = i
					break
				}
				return sent, fmt.Errorf("udpbatch: send to %v: %w", m.Addr, unix.EAFNOSUPPORT)
			}
			run := gsoRun(ms[sent+i:sent+n], s.gsoBelow)
			for j := range run {
				b := ms[sent+i+j].Buf
				if len(b) > 0 {
					s.wiov[i+j].Base = &b[0]
				} else {
					s.wiov[i+j].Base = nil
				}
				s.wiov[i+j].SetLen(len(b))
			}
			h := &s.whs[k]
			h.hdr.Iov = &s.wiov[i]
			h.hdr.SetIovlen(run)
			h.hdr.Name = (*byte)(unsafe.Pointer(&s.wname[k]))
			h.hdr.Namelen = nl
			if run > 1 {
				ctl := s.wctl[k*gsoCmsgSpace : (k+1)*gsoCmsgSpace]
				putSegment(ctl, len(m.Buf))
				h.hdr.Control = &ctl[0]
				h.hdr.SetControllen(len(ctl))
			} else {
				h.hdr.Control = nil
				h.hdr.SetControllen(0)
			}
			h.len = 0
			s.wrun[k] = run
			k++
			i += run
		}
		s.wn = k
		err := s.rc.Write(s.wfn)
		clearRefs(s.wiov[:n])
		if err != nil {
			return sent, err
		}
		if s.werr != 0 {
			// The first header failed (a later one only ends the call
			// early). A run the kernel would not cut is sent again one
			// datagram per header.
			if s.wrun[0] > 1 {
				if below, refused := gsoRefused(s.werr, len(ms[sent].Buf)); refused {
					s.gsoBelow = min(s.gsoBelow, below)
					continue
				}
			}
			return sent, os.NewSyscallError("sendmmsg", s.werr)
		}
		for _, run := range s.wrun[:s.wgot] {
			sent += run
		}
	}
	return sent, nil
}

// clearRefs drops the references to the caller's buffers, so that the
// Conn does not keep them alive.
func clearRefs(iov []unix.Iovec) {
	for i := range iov {
		iov[i].Base = nil
	}
}

// putAddr writes ap as the socket's kind of sockaddr into sa and returns
// its length, or false when the socket cannot send there.
func (s *sys) putAddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) (uint32, bool) {
	ip := ap.Addr()
	if !s.v6 {
		if !ip.Unmap().Is4() {
			return 0, false
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], ap.Port())
		return unix.SizeofSockaddrInet4, true
	}
	if !ip.IsValid() {
		return 0, false
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	return unix.SizeofSockaddrInet6, true
}

// sockaddrAddr reads the address the kernel wrote into sa.
func sockaddrAddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		// Scope IDs are dropped: the datagram relay works in zone-less
		// addresses.
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}
