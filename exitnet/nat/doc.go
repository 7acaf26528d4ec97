// Package nat opens ports on the home router in front of an exit, so that
// the internet can reach the exit's link port and the ports it lends to
// clients: UPnP-IGD (v1 and v2) and NAT-PMP, with leases renewed at half
// their lifetime, re-created after a router restart, and deleted on Close.
//
// A Mapper finds the default gateway, speaks to it only (never to another
// host on the LAN, whatever an SSDP answer or a device description says),
// maps only the ports its caller asks for, to this host's own address, and
// reports the gateway's external address only when it is a public one: a
// private, carrier-grade NAT, loopback, link-local, unspecified or other
// special-purpose address means a second NAT in front of the router
// (ErrDoubleNAT), which no mapping can open.
//
// Everything the gateway says is untrusted: SSDP answers, device
// descriptions, SOAP replies and NAT-PMP answers are size-bounded and
// checked before use.
//
// With Config.RecordPath, every mapping is written down in a file before
// the router is asked for it and dropped once deleted; the next run deletes
// what a crashed run left (only what still forwards to this host's address
// and port), before it maps anything.
//
// nat imports nothing of swarmvpn but internal/netaddr (which addresses are
// public) and internal/statefile (the record file); it must not import exitnet or any of its other packages, proxy,
// portfwd, client or cmd.
package nat
