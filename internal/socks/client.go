package socks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// Client reaches a SOCKS5 proxy at Addr, with username/password
// authentication when User is set. The zero Pipelined speaks one step at a
// time, as curl does, so that proxies which drop a pipelined request work
// too; Pipelined sends greeting, authentication and request in one write,
// as libtorrent does, offering only the one method it will use.
type Client struct {
	Addr       string
	User, Pass string
	Pipelined  bool
}

// Command is a SOCKS5 request's CMD.
type Command byte

// The commands this client sends.
const (
	CmdConnect      Command = 1
	CmdUDPAssociate Command = 3
)

// Authentication methods.
const (
	methodNone     = 0
	methodPassword = 2
	methodRefused  = 0xff
)

// ReplyError is a SOCKS5 reply other than success.
type ReplyError struct{ Code byte }

var replyText = map[byte]string{
	1: "general failure", 2: "not allowed by its rules", 3: "network unreachable",
	4: "host unreachable", 5: "connection refused", 6: "TTL expired",
	7: "command not supported", 8: "address type not supported",
}

func (e *ReplyError) Error() string {
	if t, ok := replyText[e.Code]; ok {
		return fmt.Sprintf("the proxy answered %q (SOCKS5 reply %d)", t, e.Code)
	}
	return fmt.Sprintf("the proxy answered SOCKS5 reply %d", e.Code)
}

// ErrNoMethod is the proxy refusing every authentication method offered.
var ErrNoMethod = errors.New("the proxy accepts none of the authentication methods offered")

// errAuth is the proxy refusing the user name and password.
var errAuth = errors.New("the proxy refused the user name and password")

// Dial opens a CONNECT flow to target ("host:port"; a host that is not an
// IP is sent as a name). The handshake ends when ctx does; the flow then
// has no deadline.
func (c Client) Dial(ctx context.Context, target string) (net.Conn, error) {
	conn, _, err := c.Connect(ctx, target)
	return conn, err
}

// Connect is Dial that also returns the bound address of the proxy's
// reply: for swarmvpn, the exit's source address for the flow.
func (c Client) Connect(ctx context.Context, target string) (net.Conn, netip.AddrPort, error) {
	return c.open(ctx, CmdConnect, target)
}

// open connects to the proxy and sends cmd for target, returning the
// control connection and the address in the proxy's reply.
func (c Client) open(ctx context.Context, cmd Command, target string) (net.Conn, netip.AddrPort, error) {
	req, err := request(cmd, target)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	bound, err := c.handshake(conn, req)
	if !stop() || err != nil {
		conn.Close()
		if err == nil || ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, netip.AddrPort{}, err
	}
	conn.SetDeadline(time.Time{})
	return conn, bound, nil
}

// Handshake speaks the whole dialogue for cmd and target on conn, a fresh
// connection to the proxy, and returns the address in the proxy's reply
// (with no IP when the proxy gives a name). Deadlines are the caller's.
func (c Client) Handshake(conn net.Conn, cmd Command, target string) (netip.AddrPort, error) {
	req, err := request(cmd, target)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return c.handshake(conn, req)
}

// request encodes the request for cmd and target.
func request(cmd Command, target string) ([]byte, error) {
	return AppendAddr([]byte{5, byte(cmd), 0}, target)
}

func (c Client) handshake(conn net.Conn, req []byte) (netip.AddrPort, error) {
	var err error
	if c.Pipelined {
		err = c.pipelined(conn, req)
	} else {
		err = c.stepwise(conn, req)
	}
	if err != nil {
		return netip.AddrPort{}, err
	}
	return readReply(conn)
}

// stepwise sends the greeting, authenticates if asked to, then sends req.
func (c Client) stepwise(conn net.Conn, req []byte) error {
	if err := c.Greet(conn); err != nil {
		return err
	}
	_, err := conn.Write(req)
	return err
}

// pipelined sends greeting, authentication and req in one write, then
// reads the answers to the first two.
func (c Client) pipelined(conn net.Conn, req []byte) error {
	method := byte(methodNone)
	if c.User != "" {
		method = methodPassword
	}
	msg := []byte{5, 1, method}
	if c.User != "" {
		var err error
		if msg, err = c.appendAuth(msg); err != nil {
			return err
		}
	}
	if _, err := conn.Write(append(msg, req...)); err != nil {
		return err
	}
	chosen, err := readMethod(conn)
	if err != nil {
		return err
	}
	switch chosen {
	case method:
	case methodRefused:
		return ErrNoMethod
	default:
		return fmt.Errorf("the proxy chose authentication method %d, which was not offered", chosen)
	}
	if c.User != "" {
		return readAuthReply(conn)
	}
	return nil
}

// Greet sends the greeting, offering no authentication and, with User set,
// username/password, and authenticates as the proxy chooses.
func (c Client) Greet(conn net.Conn) error {
	greeting := []byte{5, 1, methodNone}
	if c.User != "" {
		greeting = []byte{5, 2, methodNone, methodPassword}
	}
	if _, err := conn.Write(greeting); err != nil {
		return err
	}
	chosen, err := readMethod(conn)
	if err != nil {
		return err
	}
	switch {
	case chosen == methodNone:
		return nil
	case chosen == methodPassword && c.User != "":
		auth, err := c.appendAuth(nil)
		if err != nil {
			return err
		}
		if _, err := conn.Write(auth); err != nil {
			return err
		}
		return readAuthReply(conn)
	}
	return ErrNoMethod
}

// appendAuth appends the RFC 1929 request for User and Pass.
func (c Client) appendAuth(b []byte) ([]byte, error) {
	if len(c.User) > 255 || len(c.Pass) > 255 {
		return b, errors.New("socks5 user name and password must be at most 255 bytes each")
	}
	b = append(append(b, 1, byte(len(c.User))), c.User...)
	return append(append(b, byte(len(c.Pass))), c.Pass...), nil
}

// readMethod reads the answer to the greeting: the method chosen.
func readMethod(r io.Reader) (byte, error) {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("socks5 greeting: %w", err)
	}
	if b[0] != 5 {
		return 0, fmt.Errorf("not a SOCKS5 answer (% x)", b)
	}
	return b[1], nil
}

// readAuthReply reads the answer to the username/password request.
func readAuthReply(r io.Reader) error {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("socks5 authentication: %w", err)
	}
	if b[1] != 0 {
		return errAuth
	}
	return nil
}

// readReply reads the answer to a request and returns its address.
func readReply(r io.Reader) (netip.AddrPort, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("socks5 reply: %w", err)
	}
	if hdr[1] != 0 {
		return netip.AddrPort{}, &ReplyError{Code: hdr[1]}
	}
	return readAddr(r, hdr[3])
}
