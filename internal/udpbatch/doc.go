// Package udpbatch reads and writes several UDP datagrams per system call:
// recvmmsg and sendmmsg on Linux, one datagram per call elsewhere. Neither
// direction allocates once a Conn is made.
//
// It imports nothing from the module.
package udpbatch
