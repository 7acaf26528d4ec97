// Package link makes the encrypted, multiplexed connection between a client
// and an exit: ed25519 identities and the peer IDs derived from them, a TLS
// 1.3 handshake that looks like a browser's visit to an HTTPS site (uTLS
// writes Chrome's ClientHello, hello.go; the exit presents an ordinary
// certificate, cert.go), proofs of both peer IDs inside the channel bound
// to the TLS session, in which the dialer pins the exit's ID (auth.go),
// the hand-over of every other connection to the exit's web site
// (fallback.go), and a yamux session on top, tuned for torrent traffic.
//
// link imports nothing from swarmvpn; every other package may import it.
package link
