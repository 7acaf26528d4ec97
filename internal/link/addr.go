package link

import (
	"fmt"
	"net"
	"strings"
)

// ExitAddr is where to reach an exit and who it must be: PEERID@HOST:PORT.
type ExitAddr struct {
	ID   PeerID
	Addr string // host:port
}

func (a ExitAddr) String() string { return a.ID.String() + "@" + a.Addr }

// ParseExitAddr parses PEERID@HOST:PORT.
func ParseExitAddr(s string) (ExitAddr, error) {
	idText, hostport, ok := strings.Cut(s, "@")
	if !ok {
		return ExitAddr{}, fmt.Errorf("exit address %q: want PEERID@HOST:PORT, as printed by 'swarmvpn exit'", s)
	}
	id, err := ParsePeerID(idText)
	if err != nil {
		return ExitAddr{}, fmt.Errorf("exit address %q: %w", s, err)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" || port == "" {
		return ExitAddr{}, fmt.Errorf("exit address %q: %q is not HOST:PORT", s, hostport)
	}
	return ExitAddr{ID: id, Addr: hostport}, nil
}
