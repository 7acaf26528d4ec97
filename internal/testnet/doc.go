// Package testnet helps tests that need the whole path: an application's
// SOCKS5 dialogue with the proxy (internal/socks, pipelined as libtorrent
// speaks it) that reports the proxy's reply code, and an in-process
// topology of exit, client pool and local proxies on loopback.
//
// Only tests import testnet.
package testnet
