package proxy

import (
	"context"
	"net"
)

// Dialer carries a flow to its destination. *net.Dialer satisfies it, so
// tests need no tunnel.
//
// addr is "host:port" where host may be an unresolved domain name; the proxy
// never resolves names itself. network is always "tcp". An error should say
// why the flow could not be carried in a way wire.StatusOf understands (a
// *wire.Error, or a net/DNS/syscall error): the proxy turns it into the
// SOCKS5 reply or HTTP status the client sees.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}
