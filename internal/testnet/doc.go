// Package testnet helps tests that need the whole path: a minimal SOCKS5
// client that reports the proxy's reply code, and an in-process topology of
// an exit (exit.New) and a client (client.New, as 'swarmvpn connect' builds
// one) on loopback.
//
// Only tests import testnet.
package testnet
