// Package client assembles a swarmvpn client: the pool of links to exits,
// the local SOCKS5 and HTTP proxies, the adapter that carries SOCKS5 UDP
// associations through the pool, the forwarded port's announcements (port
// file, hook, qBittorrent), the cache of exits learned from other exits, and
// the control socket that answers 'swarmvpn status' and 'swarmvpn peers'.
//
// New validates a Config and opens every listener; Run runs it all until its
// context ends. 'swarmvpn connect' and the in-process tests
// (internal/testnet) build their clients through New, so the tests run what
// ships. Errors name settings as the command's flags and config files do
// (--socks, --forward), since that is what a user changes.
//
// client may import exitnet/*, proxy, portfwd and internal/* (but not
// internal/testnet). Nothing imports client except cmd/swarmvpn, tests and
// internal/testnet, which only tests import.
package client
