// Package exitnet is the network of exits, one role per package:
//
//   - exit: the exit server, which carries clients' flows to their
//     destinations and lends them forwarded ports;
//   - pool: the client's links to exits, which the local proxies dial
//     through;
//   - discovery: how exits become known (signed descriptors, mDNS, the
//     known-exits cache);
//   - policy: which destinations an exit carries.
//
// policy and discovery lie beneath exit and pool; exit and pool never
// import each other. This package holds no code.
package exitnet
