// Package mainline is swarmvpn's client of the BitTorrent Mainline DHT: the rendezvous through
// which exits make themselves known and clients find exits they have never heard of, with no
// server of ours anywhere.
//
// A [Node] is one DHT node (github.com/anacrolix/dht/v2). On it:
//
//   - an exit announces its link port (BEP 5 announce_peer) on the day's rendezvous info-hash
//     ([RendezvousHash]: SHA-1 of a fixed string and the UTC date, so no info-hash is a permanent
//     target), and publishes an opaque value as a BEP 44 mutable item signed by its ed25519 key
//     ([Node.Announce], [Node.Publish], and the [Publisher] loop that keeps both fresh);
//   - a client lists candidate exit addresses with get_peers on today's and yesterday's hash
//     ([Node.Lookup]) and fetches the item of an exit it knows by key ([Node.Get]).
//
// Everything the DHT returns is untrusted: candidate addresses are deduplicated, capped per /24
// (IPv4) and /48 (IPv6), stripped of loopback, private and other forbidden ranges (unless
// Config.AllowPrivate, for labs and tests) and bounded in count; items are verified (key, salt,
// signature, size) and forged ones are dropped and counted; every call is bounded in time. What
// the value bytes mean (the exit's descriptor) is the caller's business: this package neither
// parses nor trusts them.
//
// The routing table is saved to Config.StateFile (see state.go for the format) so a restart needs
// no bootstrap router.
//
// This package imports nothing of swarmvpn except internal/*; the discovery, exit and client code
// import it, never the other way round.
package mainline
