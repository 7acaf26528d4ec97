// Package link makes the encrypted, multiplexed connection between a client
// and an exit: ed25519 identities and the peer IDs derived from them, a
// mutual TLS 1.3 handshake in which the dialer pins the exit's peer ID, and a
// yamux session on top, tuned for torrent traffic.
//
// link imports nothing from swarmvpn; every other package may import it.
package link
