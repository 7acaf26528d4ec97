// Package announce rewrites what a torrent client tells its trackers, in
// flight, so that trackers hand out the port the exit forwards instead of
// the one the client believes it listens on (a proxied libtorrent older
// than 2.0.10 announces port 1), and do not learn the user's own addresses.
//
// It knows two announce formats, each from untrusted bytes: an HTTP tracker
// request (BEP 3: a GET whose query carries info_hash and peer_id, its
// port= rewritten, ip=, ipv4= and ipv6= naming one of the user's addresses
// removed, every other byte kept) and a UDP tracker announce (BEP 15: the
// port field of an announce sent to a destination that answered a connect
// request). HTTPWriter follows one TCP flow's outgoing bytes, request after
// request on a kept-alive connection; UDPTrackers follows one UDP
// association's exchanges. Anything else passes through untouched, and a
// flow whose first bytes cannot start a GET is not looked at again.
//
// announce does no I/O of its own and imports nothing from swarmvpn; the
// client package wraps its dialer and its UDP associations with it.
package announce
