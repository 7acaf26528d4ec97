// Package testnet helps tests that need the whole path: a minimal SOCKS5
// client that reports the proxy's reply code, and an in-process topology of
// exit, client pool and local proxies on loopback.
//
// Only tests import testnet.
package testnet
