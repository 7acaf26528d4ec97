package udpbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ErrNoSocket is Queue's answer when no UDP socket on this host receives
// for the destination.
var ErrNoSocket = errors.New("udpbatch: no local socket for that destination")

// QueueProbe reads how full another UDP socket's receive queue is, from
// the kernel's socket diagnostics (NETLINK_SOCK_DIAG), on Linux. It finds
// the socket the way the kernel would deliver a datagram: the one bound to
// the destination address and port in this network namespace, so it
// answers only for destinations on this host. It must not be used
// concurrently.
type QueueProbe struct {
	fd  int
	seq uint32
	buf []byte
}

// NewQueueProbe opens a probe; Close releases it.
func NewQueueProbe() (*QueueProbe, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("udpbatch: sock_diag socket: %w", err)
	}
	// a reply never takes long; a lost one must not hang the caller
	tv := unix.Timeval{Usec: 100000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("udpbatch: sock_diag socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("udpbatch: sock_diag socket: %w", err)
	}
	return &QueueProbe{fd: fd, buf: make([]byte, 1024)}, nil
}

// Close closes the probe. It is idempotent.
func (p *QueueProbe) Close() error {
	if p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	return err
}

const (
	sockDiagByFamily  = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagSkmeminfo = 7  // INET_DIAG_SKMEMINFO
	diagReqLen        = 56 // struct inet_diag_req_v2
	diagMsgLen        = 72 // struct inet_diag_msg
)

// Queue returns the bytes queued on the receive side of the local UDP
// socket that datagrams from src to dst reach, and that socket's receive
// buffer size (what the kernel compares the queue with before dropping).
// Both count the kernel's per-datagram overhead, not only payload.
func (p *QueueProbe) Queue(src, dst netip.AddrPort) (queued, limit int, err error) {
	if p.fd < 0 {
		return 0, 0, errors.New("udpbatch: queue probe closed")
	}
	family := uint8(unix.AF_INET6)
	if dst.Addr().Unmap().Is4() && src.Addr().Unmap().Is4() {
		family = unix.AF_INET
	}
	p.seq++
	req := p.buf[:unix.NLMSG_HDRLEN+diagReqLen]
	clear(req)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], p.seq)
	r := req[unix.NLMSG_HDRLEN:]
	r[0] = family
	r[1] = unix.IPPROTO_UDP
	r[2] = 1 << (inetDiagSkmeminfo - 1)
	binary.NativeEndian.PutUint32(r[4:], 0xffffffff) // every state
	// inet_diag_sockid: the lookup is the kernel's for a datagram from
	// src (sport, src) to dst (dport, dst)
	binary.BigEndian.PutUint16(r[8:], src.Port())
	binary.BigEndian.PutUint16(r[10:], dst.Port())
	putDiagAddr(r[12:28], src.Addr(), family)
	putDiagAddr(r[28:44], dst.Addr(), family)
	binary.NativeEndian.PutUint32(r[48:], 0xffffffff) // INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(r[52:], 0xffffffff)
	if err := unix.Sendto(p.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, 0, fmt.Errorf("udpbatch: sock_diag request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(p.fd, p.buf, 0)
		if err != nil {
			return 0, 0, fmt.Errorf("udpbatch: sock_diag reply: %w", err)
		}
		q, l, err, ok := parseDiagReply(p.buf[:n], p.seq)
		if ok {
			return q, l, err
		}
	}
}

func putDiagAddr(b []byte, a netip.Addr, family uint8) {
	if family == unix.AF_INET {
		v := a.Unmap().As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// parseDiagReply reads one netlink reply to request seq; ok is false when
// b holds none (a stale reply), and the caller should read again.
func parseDiagReply(b []byte, seq uint32) (queued, limit int, err error, ok bool) {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		typ := binary.NativeEndian.Uint16(b[4:])
		s := binary.NativeEndian.Uint32(b[8:])
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return 0, 0, errors.New("udpbatch: sock_diag reply malformed"), true
		}
		msg := b[unix.NLMSG_HDRLEN:l]
		if s != seq {
			b = b[min(nlAlign(l), len(b)):]
			continue
		}
		switch typ {
		case unix.NLMSG_ERROR:
			if len(msg) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(msg)); e < 0 {
					if unix.Errno(-e) == unix.ENOENT {
						return 0, 0, ErrNoSocket, true
					}
					return 0, 0, fmt.Errorf("udpbatch: sock_diag: %w", unix.Errno(-e)), true
				}
			}
			return 0, 0, errors.New("udpbatch: sock_diag reply empty"), true
		case sockDiagByFamily:
			if len(msg) < diagMsgLen {
				return 0, 0, errors.New("udpbatch: sock_diag reply short"), true
			}
			queued = int(binary.NativeEndian.Uint32(msg[56:])) // idiag_rqueue
			limit = -1
			for a := msg[diagMsgLen:]; len(a) >= 4; {
				al := int(binary.NativeEndian.Uint16(a[0:]))
				at := binary.NativeEndian.Uint16(a[2:])
				if al < 4 || al > len(a) {
					break
				}
				if at == inetDiagSkmeminfo && al >= 4+8 {
					// SK_MEMINFO_RMEM_ALLOC, SK_MEMINFO_RCVBUF
					queued = int(binary.NativeEndian.Uint32(a[4:]))
					limit = int(binary.NativeEndian.Uint32(a[8:]))
				}
				a = a[min(nlAlign(al), len(a)):]
			}
			if limit < 0 {
				return 0, 0, errors.New("udpbatch: sock_diag reply without memory info"), true
			}
			return queued, limit, nil, true
		default:
			return 0, 0, fmt.Errorf("udpbatch: sock_diag reply of type %d", typ), true
		}
	}
	return 0, 0, nil, false
}

func nlAlign(n int) int { return (n + 3) &^ 3 }
