// Package discovery is how exits become known: the signed descriptor an
// exit publishes of itself (Sign, Verify, the framing on a stream), the reply
// an exit gives to a descriptor request, mDNS advertising and browsing on a
// LAN, and the file in which a client keeps the exits it has learned.
//
// Everything discovery reads comes from the network and is untrusted until
// Verify says otherwise.
//
// discovery imports only internal/*; it must not import the exit, the pool,
// proxy or portfwd.
package discovery
