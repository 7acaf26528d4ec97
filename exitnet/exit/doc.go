// Package exit is the exit server: it accepts links from clients, carries
// their TCP flows and UDP associations to destinations its policy allows,
// lends them forwarded ports, holds each client to its limits (flows, UDP
// associations, rate, receive-window memory, half-open time), and answers
// descriptor requests with its own signed descriptor and those it knows,
// and announces and publishes itself on the Mainline DHT (dht.go).
//
// exit imports exitnet/policy, exitnet/discovery (and its mainline),
// exitnet/nat and internal/*; it must
// not import exitnet/pool, proxy, portfwd or client.
package exit
