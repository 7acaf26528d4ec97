// Package pool is the client's side of the links to exits: it dials exits,
// vets them by their signed descriptors, ranks them by measured round trip
// and load, keeps the best one active and a second on standby, fails over
// at once, asks for a forwarded port and serves the inbound connections the
// exit sends back. Its DialContext and Associate are what the local proxies
// carry flows through.
//
// pool imports exitnet/discovery and internal/*; it must not import
// exitnet/exit, exitnet/policy, proxy, portfwd or client.
package pool
