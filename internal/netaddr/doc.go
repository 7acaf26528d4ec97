// Package netaddr classifies IP addresses: whether one is public, and if
// not, which special-purpose range it lies in (loopback, private, carrier-
// grade NAT, link-local, multicast, documentation, reserved and the rest of
// the IANA IPv4 and IPv6 special-purpose registries that matter to an exit,
// a NAT mapper or a DHT client). It is the one table of those ranges in
// swarmvpn; each caller decides what it does with each class.
//
// It imports nothing from the module.
package netaddr
