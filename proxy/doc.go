// Package proxy is the client's front door: a SOCKS5 server (RFC 1928, with
// RFC 1929 username/password) and an HTTP proxy (CONNECT and absolute-URI
// requests) that hand every flow to a Dialer, and every SOCKS5 UDP
// association's datagrams to an Association opened by an Associator.
//
// The proxy never resolves names and never reaches the network itself: a
// domain name from the client goes to the Dialer or the Association as it
// came, so the exit resolves it and no DNS query leaves this machine. The
// Dialer and the Associator are the only ways out; when they fail, the
// client gets the matching SOCKS5 reply or HTTP status, or its datagrams are
// dropped, and nothing is sent directly (fail closed). The only sockets the
// proxy opens itself are its listeners and, per UDP association, a relay
// socket on the address the client reached it at.
//
// proxy declares the small interfaces it needs (Dialer, Associator) and
// imports only internal/wire and internal/relay from swarmvpn; it must not
// import exitnet, portfwd or internal/link. *net.Dialer satisfies Dialer, so
// tests need no tunnel.
package proxy
