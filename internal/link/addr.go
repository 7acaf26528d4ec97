package link

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ExitAddr is where to reach an exit and who it must be: PEERID@HOST:PORT.
type ExitAddr struct {
	ID   PeerID
	Addr string // host:port
}

func (a ExitAddr) String() string { return a.ID.String() + "@" + a.Addr }

// ParseExitAddr parses PEERID@HOST:PORT. Space around it is ignored; the
// port must be a number from 1 to 65535, so that a typo is an error here
// rather than a dial that fails for ever.
func ParseExitAddr(s string) (ExitAddr, error) {
	s = strings.TrimSpace(s)
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
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return ExitAddr{}, fmt.Errorf("exit address %q: port %q is not a number from 1 to 65535", s, port)
	}
	return ExitAddr{ID: id, Addr: hostport}, nil
}
