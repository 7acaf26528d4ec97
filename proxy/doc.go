// Package proxy is the client's front door: a SOCKS5 server (RFC 1928, with
// RFC 1929 username/password) and an HTTP proxy (CONNECT and absolute-URI
// requests) that hand every flow to a Dialer.
//
// The proxy never resolves names and never reaches the network itself: a
// domain name from the client goes to the Dialer as it came, so the exit
// resolves it and no DNS query leaves this machine. The Dialer is the only
// way out; when it fails, the client gets the matching SOCKS5 reply or HTTP
// status and nothing is dialed directly (fail closed).
//
// proxy declares the small interfaces it needs (Dialer) and imports only
// internal/wire and internal/relay from swarmvpn; it must not import exitnet,
// portfwd or internal/link. *net.Dialer satisfies Dialer, so tests need no
// tunnel.
package proxy
