// Package bench is the engine behind 'swarmvpn bench': it measures what a
// user gets through a path — a swarmvpn exit and client started here as
// processes of the real binary, a remote exit through a local client, any
// other SOCKS5 proxy, or no proxy at all — with the same workloads, and
// reports each figure's median over several rounds and its ratio to the
// first path. Paths take turns round by round, so a drift in the machine's
// speed during a run touches them all alike.
//
// The workloads: bulk throughput (1, 8 and 64 flows, each direction),
// request/response latency on an open flow, flow setup one at a time and in
// a burst, thousands of idle flows with the memory they cost each swarmvpn
// process, UDP through SOCKS5 UDP ASSOCIATE, and optionally one flow and
// request/response over a link with added delay (LinkDelay; on two hops,
// each hop over one), the capacity of one exit under many
// client processes at once (capacity.go), and a torrent moved over uTP only
// between libtorrent sessions (utp.py, run by /usr/bin/python3 when it has
// python3-libtorrent; the seeders are targets bench starts). The bulk and
// UDP workloads also give the CPU seconds per GiB of each path's client and
// exit processes, read from /proc (cpu.go, procfs.go).
//
// bench reaches every path through SOCKS5 (the small client in
// internal/socks, spoken step by step) or plain sockets, and starts
// swarmvpn only as separate processes, so the figures include everything a
// user pays for. It must not import exitnet, proxy, portfwd or
// internal/link. Every load loop is
// bounded in count and in time, and traffic goes only to the targets bench
// starts itself: on loopback, or on the host named for a remote exit.
package bench
