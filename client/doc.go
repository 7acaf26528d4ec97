// Package client assembles a swarmvpn client: the pool of links to exits,
// the local SOCKS5 and HTTP proxies, the adapter that carries SOCKS5 UDP
// associations through the pool, the forwarded port's announcements (port
// file, hook, qBittorrent), the cache of exits learned from other exits, and
// the control socket that answers 'swarmvpn status' and 'swarmvpn peers'.
//
// It also makes the torrent client connectable through the forwarded port:
// it wraps the pool's flows and UDP associations so that tracker announces
// carry the forwarded port (portfwd/announce does the rewriting), names the
// forward target of the association that holds the port (so inbound uTP
// reaches a seeder that has sent nothing yet), has the exit probe the port
// (Reachability), and has the exit refuse TCP on it while the local target
// takes none.
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
