package udpbatch

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18): a run of
// datagrams to one destination, all of one size but the last, which may be
// shorter, goes to the kernel as one message that it cuts into those
// datagrams itself, after one pass through its UDP and IP layers instead of
// one per datagram. A torrent client's uTP sends such runs (full-size
// packets to one peer), and so do the relay's batches to one target. What
// arrives is the same datagrams: the receiver cannot tell.

const (
	// gsoSegments and gsoBytes bound a run: the kernel takes at most 64
	// segments (UDP_MAX_SEGMENTS) of one IP datagram's worth of bytes.
	gsoSegments = 64
	gsoBytes    = 65000
	// gsoMinMTU: a run refused with datagrams no larger than this was not
	// refused for its datagrams' size (an IPv4 host must take 576 bytes).
	gsoMinMTU = 576
)

// gsoCmsgSpace is the room for one UDP_SEGMENT control message.
var gsoCmsgSpace = unix.CmsgSpace(2)

// gsoProbe returns the initial gsoBelow for the socket: unlimited when the
// kernel knows UDP_SEGMENT, 0 when not.
func gsoProbe(rc syscall.RawConn) int {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		_, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	}); cerr != nil || err != nil {
		return 0
	}
	return 1 << 16
}

// gsoRun returns how many datagrams from ms[0] on one header carries: a
// run of at least two to one destination, each of the first one's size
// (under below, and not empty) but the last, which may be shorter, within
// the kernel's bounds; else 1.
func gsoRun(ms []Message, below int) int {
	size := len(ms[0].Buf)
	if size == 0 || size >= below || len(ms) < 2 {
		return 1
	}
	run, total := 1, size
	for run < len(ms) && run < gsoSegments {
		m := &ms[run]
		l := len(m.Buf)
		if m.Addr != ms[0].Addr || l == 0 || l > size || total+l > gsoBytes {
			break
		}
		run++
		total += l
		if l < size {
			break
		}
	}
	return run
}

// putSegment writes the UDP_SEGMENT control message for datagrams of size
// bytes into ctl, of gsoCmsgSpace bytes.
func putSegment(ctl []byte, size int) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&ctl[unix.CmsgLen(0)])) = uint16(size)
}

// gsoRefused reports whether errno is the kernel refusing to cut a run of
// datagrams of size bytes, and below which size runs may still be tried:
// EINVAL for datagrams over the route's MTU (smaller ones may pass), EIO
// for a device that cannot checksum the segments, EOPNOTSUPP or
// ENOPROTOOPT for no support at all.
func gsoRefused(errno syscall.Errno, size int) (below int, refused bool) {
	switch errno {
	case unix.EINVAL:
		if size > gsoMinMTU {
			return size, true
		}
		return 0, true
	case unix.EIO, unix.EOPNOTSUPP, unix.ENOPROTOOPT:
		return 0, true
	}
	return 0, false
}
