// Package portfwd makes a client behind swarmvpn connectable: the leases
// of forwarded ports at the exit, the local target inbound connections are
// carried to, and telling the torrent client its port (a log line, a port
// file, a hook command, qBittorrent's WebUI API).
//
// portfwd imports only internal/*; it must not import
// proxy or exitnet, which declare the interfaces it satisfies.
package portfwd
