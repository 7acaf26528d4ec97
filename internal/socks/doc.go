// Package socks is a small SOCKS5 client (RFC 1928, with RFC 1929
// username/password authentication): CONNECT, UDP ASSOCIATE, and the header
// of the datagrams a UDP association carries. The bench command measures
// proxies with it, and tests reach swarmvpn's proxy through it.
//
// A Client speaks either stepwise (greeting, wait for the method, then the
// request, as curl does) or pipelined (greeting, authentication and request
// in one write, as libtorrent does), so that both dialogues a proxy meets in
// the field are exercised by one implementation.
//
// socks imports only internal/wire, for the address format. It must not
// import proxy, exitnet or any other swarmvpn package: it is the
// application's side of the protocol and knows nothing of the tunnel behind
// a proxy.
package socks
