// Package udpbatch reads and writes several UDP datagrams per system call:
// recvmmsg and sendmmsg on Linux, one datagram per call elsewhere. On
// Linux a run of equal datagrams to one destination goes to the kernel as
// one message that it cuts itself (UDP_SEGMENT, gso_linux.go). Neither
// direction allocates once a Conn is made. QueueProbe reads how full a
// receiving socket on this host is (Linux's sock_diag), so that a sender
// can hold a burst rather than overflow it.
//
// It imports nothing from the module.
package udpbatch
