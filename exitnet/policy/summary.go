package policy

import (
	"fmt"
	"net/netip"
)

// CarriesP2P reports whether the policy lets BitTorrent through: the ports
// peers commonly listen on, to an ordinary public address. Nothing is sent;
// the address only asks the policy.
func (p *Policy) CarriesP2P() bool {
	sample := netip.MustParseAddr("1.1.1.1")
	for _, port := range []uint16{6881, 6889, 51413, 1024, 65535} {
		if p.Check(sample, port) != nil {
			return false
		}
	}
	return true
}

// Summary describes the policy for people, for the exit's descriptor:
// "all ports except 25; private ranges refused; 2 rules".
func (p *Policy) Summary() string {
	deny := p.DenyPorts
	if deny == nil {
		deny = defaultDenyPorts
	}
	s := "all ports"
	if len(deny) > 0 {
		s += " except"
		for i, r := range deny {
			if i > 0 {
				s += ","
			}
			s += " " + r.String()
		}
	}
	if p.AllowPrivate {
		s += "; private ranges allowed"
	} else {
		s += "; private ranges refused"
	}
	if n := len(p.Rules); n > 0 {
		s += fmt.Sprintf("; %d rule(s)", n)
	}
	return s
}
