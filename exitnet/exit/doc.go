// Package exit is the exit server: it accepts links from clients (and shows
// everyone else a web site, fallback.go), carries their TCP flows and UDP
// associations to destinations its policy allows,
// lends them forwarded ports, holds each client to its limits (flows, UDP
// associations, rate, receive-window memory, half-open time), and answers
// descriptor requests with its own signed descriptor and those it knows.
// Behind a home router it maps its link port and every lent port through a
// PortMapper (not knowing which protocol the router speaks), publishes the
// external ones, and asks known exits to dial it back (reach requests,
// which it answers for them too).
//
// exit imports exitnet/policy, exitnet/discovery and internal/*; it must
// not import exitnet/pool, exitnet/nat (PortMapper is its own interface),
// proxy, portfwd or client.
package exit
