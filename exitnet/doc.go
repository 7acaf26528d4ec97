// Package exitnet is the network of exits: the exit server that carries
// clients' flows to their destinations under an exit policy, and the client's
// pool of links to exits that the local proxies dial through.
//
// exitnet imports internal/link, internal/wire and internal/relay; it must
// not import proxy or portfwd.
package exitnet
