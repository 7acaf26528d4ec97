package testnet

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/socks"
)

// app is how tests' applications speak to the proxy: pipelined, as
// libtorrent does. bench speaks to it step by step.
var app = socks.Client{Pipelined: true}

// ReplyCode returns the SOCKS5 reply code in err, or -1 if err is not a
// *socks.ReplyError.
func ReplyCode(err error) int {
	if re, ok := errors.AsType[*socks.ReplyError](err); ok {
		return int(re.Code)
	}
	return -1
}

// SOCKS5Dial opens a CONNECT flow to target ("host:port"; a host name is
// sent as a name) through the SOCKS5 proxy at proxyAddr, without
// authentication. It returns the conn and the bound address of the reply.
func SOCKS5Dial(ctx context.Context, proxyAddr, target string) (net.Conn, netip.AddrPort, error) {
	c := app
	c.Addr = proxyAddr
	return c.Connect(ctx, target)
}

// UDPClient is an application's side of a SOCKS5 UDP association.
type UDPClient struct{ *socks.Association }

// SOCKS5Associate asks the proxy at proxyAddr for a UDP association for
// 0.0.0.0:0, as libtorrent does.
func SOCKS5Associate(ctx context.Context, proxyAddr string) (*UDPClient, error) {
	c := app
	c.Addr = proxyAddr
	a, err := c.Associate(ctx)
	if err != nil {
		return nil, err
	}
	return &UDPClient{a}, nil
}

// Receive waits up to timeout for a datagram from the relay and returns its
// payload and the source address in its header.
func (u *UDPClient) Receive(timeout time.Duration) ([]byte, netip.AddrPort, error) {
	u.Conn.SetReadDeadline(time.Now().Add(timeout))
	p, src, err := u.Association.Receive(make([]byte, 65536))
	if err == nil && !src.IsValid() {
		err = errors.New("reply with a domain address")
	}
	return p, src, err
}

// Close ends the association by closing the control connection.
func (u *UDPClient) Close() { u.Association.Close() }
