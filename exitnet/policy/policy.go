package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/swarmvpn/swarmvpn/internal/netaddr"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// ErrNotAllowed is wrapped by every refusal from Policy.Check. The error
// returned also carries wire.StatusNotAllowed, so wire.StatusOf reports it as
// a SOCKS5 "connection not allowed by ruleset".
var ErrNotAllowed = errors.New("not allowed by exit policy")

// PortRange is an inclusive range of ports; the zero value means all ports.
type PortRange struct{ Lo, Hi uint16 }

const portRangeForm = `want a port (25), a range (6881-6889) or * for all ports`

// ParsePortRange parses "25", "6881-6889", or "*" or "" for all ports.
// Port 0 is not accepted, and Lo must not exceed Hi.
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return PortRange{}, nil
	}
	loStr, hiStr, isRange := strings.Cut(s, "-")
	lo, err := parsePolicyPort(loStr)
	if err != nil {
		return PortRange{}, fmt.Errorf("invalid port range %q: %v; %s", s, err, portRangeForm)
	}
	hi := lo
	if isRange {
		if hi, err = parsePolicyPort(hiStr); err != nil {
			return PortRange{}, fmt.Errorf("invalid port range %q: %v; %s", s, err, portRangeForm)
		}
		if lo > hi {
			return PortRange{}, fmt.Errorf("invalid port range %q: %d is greater than %d; %s", s, lo, hi, portRangeForm)
		}
	}
	return PortRange{Lo: lo, Hi: hi}, nil
}

func parsePolicyPort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number from 1 to 65535", s)
	}
	if n == 0 {
		return 0, errors.New("port 0 is not a port")
	}
	return uint16(n), nil
}

// Contains reports whether port is in r.
func (r PortRange) Contains(port uint16) bool {
	return r == PortRange{} || r.Lo <= port && port <= r.Hi
}

// String returns "*" for all ports, "25" for one port and "6881-6889" for a
// range, the forms ParsePortRange accepts.
func (r PortRange) String() string {
	switch {
	case r == PortRange{}:
		return "*"
	case r.Lo == r.Hi:
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// Rule allows or denies destinations in Prefix on Ports.
//
// Prefix is matched against unmapped addresses, so an IPv4 range must be
// written as an IPv4 prefix (10.0.0.0/8), not in its IPv4-mapped IPv6 form;
// ParseRule refuses the latter.
type Rule struct {
	Allow  bool
	Prefix netip.Prefix
	Ports  PortRange
}

const ruleForm = `want "allow|deny <ip or prefix> [port|lo-hi|*]", e.g. "deny 0.0.0.0/0 25" or "allow 10.200.0.0/16 6881-6889"`

// ParseRule parses a rule such as "allow 10.0.0.0/8 6881-6889",
// "deny 0.0.0.0/0 25", "deny ::/0 *" or "allow 192.168.1.5". A bare IP is a
// /32 or /128; without ports the rule covers all ports. The prefix is
// masked ("10.1.2.3/8" is 10.0.0.0/8). Errors are one line that shows the
// expected form.
func ParseRule(s string) (Rule, error) {
	f := strings.Fields(s)
	if len(f) < 2 || len(f) > 3 {
		return Rule{}, fmt.Errorf("invalid rule %q: %d words; %s", s, len(f), ruleForm)
	}
	var r Rule
	switch {
	case strings.EqualFold(f[0], "allow"):
		r.Allow = true
	case strings.EqualFold(f[0], "deny"):
	default:
		return Rule{}, fmt.Errorf("invalid rule %q: %q is neither allow nor deny; %s", s, f[0], ruleForm)
	}
	if strings.Contains(f[1], "/") {
		p, err := netip.ParsePrefix(f[1])
		if err != nil {
			return Rule{}, fmt.Errorf("invalid rule %q: %q is not an IP prefix; %s", s, f[1], ruleForm)
		}
		r.Prefix = p.Masked()
	} else {
		ip, err := netip.ParseAddr(f[1])
		if err != nil {
			return Rule{}, fmt.Errorf("invalid rule %q: %q is not an IP address or prefix; %s", s, f[1], ruleForm)
		}
		if ip.Zone() != "" {
			return Rule{}, fmt.Errorf("invalid rule %q: %q has a zone, which a rule cannot match; %s", s, f[1], ruleForm)
		}
		r.Prefix = netip.PrefixFrom(ip, ip.BitLen())
	}
	if r.Prefix.Addr().Is4In6() {
		return Rule{}, fmt.Errorf("invalid rule %q: %q is IPv4-mapped IPv6; write the IPv4 prefix (%s); %s",
			s, f[1], unmapPolicyPrefix(r.Prefix), ruleForm)
	}
	if len(f) == 3 {
		ports, err := ParsePortRange(f[2])
		if err != nil {
			return Rule{}, fmt.Errorf("invalid rule %q: %v; %s", s, err, ruleForm)
		}
		r.Ports = ports
	}
	return r, nil
}

// unmapPolicyPrefix turns ::ffff:a.b.c.d/96+n into a.b.c.d/n, for an error
// message.
func unmapPolicyPrefix(p netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
}

// String returns the rule in the form ParseRule reads, e.g.
// "deny 0.0.0.0/0 25"; a rule for all ports has no port field.
func (r Rule) String() string {
	verb := "deny "
	if r.Allow {
		verb = "allow "
	}
	if r.Ports == (PortRange{}) {
		return verb + r.Prefix.String()
	}
	return verb + r.Prefix.String() + " " + r.Ports.String()
}

// Policy decides which destinations an exit dials. The zero value is the
// default policy: every public address on every port except 25 (SMTP).
//
// Check first refuses, whatever the configuration, invalid addresses,
// addresses with a zone, unspecified (0.0.0.0/8, ::), multicast (224.0.0.0/4,
// ff00::/8) and broadcast (255.255.255.255) addresses, and NAT64 forms of
// those; an exit must never dial them.
//
// Then the Rules are checked in order; the first rule whose Prefix and Ports
// match decides. A deny rule refuses. An allow rule allows the port (even one
// in DenyPorts) and the address if it is public; it lifts a built-in refusal
// of the address only if its Prefix lies inside the refused range, so
// "allow 10.200.0.0/16" opens that network while "allow 0.0.0.0/0 6881-6889"
// opens ports and never loopback or the LAN.
//
// With no matching rule, the built-in refusals apply:
//   - private ranges, lifted by AllowPrivate: loopback (127.0.0.0/8, ::1),
//     RFC 1918, CGNAT (100.64.0.0/10), link-local (169.254.0.0/16 including
//     the cloud metadata address 169.254.169.254, fe80::/10), IETF protocol
//     assignments (192.0.0.0/24), benchmarking (198.18.0.0/15, used by
//     fake-IP DNS resolvers), ULA (fc00::/7), site-local (fec0::/10) and
//     local-use NAT64 (64:ff9b:1::/48);
//   - reserved ranges, not lifted by AllowPrivate: 240.0.0.0/4 and the
//     deprecated IPv4-compatible ::/96;
//   - IPv6 forms that embed IPv4 addresses, judged by those: well-known
//     NAT64 (64:ff9b::/96), IPv4-translated (::ffff:0:0:0/96), 6to4
//     (2002::/16) and Teredo (2001::/32, its server and its client address),
//     whose embedded address is refused by any of the above, since a
//     gateway, relay or local route would carry them to that IPv4 address;
//     AllowPrivate does not lift this, only a rule inside the form's range;
//   - the exit's own addresses, when Own is set (see Own), and, never
//     lifted, where its own process listens, on those addresses and on
//     loopback, and the broadcast addresses of its own IPv4 networks;
//   - the ports in DenyPorts, on every address.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are unmapped before any check,
// so they are treated as the IPv4 address they carry.
//
// The ranges are those of internal/netaddr. Its documentation ranges
// (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are not
// refused: they route nowhere, and labs use them as public addresses.
type Policy struct {
	// AllowPrivate lifts the refusal of loopback and private ranges (RFC
	// 1918, CGNAT, IPv6 ULA, link-local, loopback), for labs and tests.
	// It does not lift the refusal of multicast, unspecified, broadcast and
	// reserved addresses.
	AllowPrivate bool
	// Rules are checked in order before the built-in refusals; the first
	// rule that matches decides.
	Rules []Rule
	// DenyPorts are refused on every address unless a Rule allows them.
	// Nil means the default, port 25 (SMTP); a non-nil empty slice refuses
	// no port. A zero PortRange in it refuses every port.
	DenyPorts []PortRange
	// Own, when set, holds the exit's own addresses, which the exit keeps
	// up to date while it runs. They are refused, with AllowPrivate too
	// (a flow to one would reach the exit host's own services, from the
	// host itself, past any firewall in front of it), as are IPv6 forms
	// that embed one. Loopback addresses are left to the private ranges:
	// AllowPrivate opens them. Only an allow rule that names the address
	// itself (a /32 or /128) lifts this refusal.
	//
	// The addresses the exit's own process listens on
	// (OwnAddrs.StoreListeners; one on an unspecified address answers on
	// loopback and on all the exit's own addresses) are refused whatever
	// AllowPrivate, Rules and OwnPorts say: a lab exit must not carry its
	// clients to its own status page, metrics, link, DHT socket or mDNS
	// responder. Nor are the directed broadcast addresses of its own
	// networks (OwnAddrs.StoreBroadcasts), which reach every host there
	// and the exit's own sockets on an unspecified address.
	Own *OwnAddrs
	// OwnPorts are ports allowed on the exit's own addresses all the same:
	// the exit's forwarded port range, so that two clients of one exit
	// can reach each other's forwarded ports. A zero PortRange in it
	// covers every port.
	OwnPorts []PortRange
}

var (
	defaultDenyPorts = []PortRange{{Lo: 25, Hi: 25}}
	defaultPolicy    Policy
)

// policyClass is how the built-in refusals treat an address.
type policyClass uint8

const (
	classPublic   policyClass = iota
	classReserved             // lifted only by a rule inside the range
	classPrivate              // lifted by AllowPrivate or a rule inside the range
	classNever                // never lifted
)

// policyClassOf is how the built-in refusals treat each class of
// internal/netaddr, the one table of special-purpose ranges. Documentation
// ranges are not refused: they route nowhere, so refusing them protects
// nothing, and labs use them as stand-ins for public addresses.
func policyClassOf(c netaddr.Class) policyClass {
	switch {
	case c == netaddr.Public || c == netaddr.Documentation:
		return classPublic
	case c.Local():
		return classPrivate
	case c == netaddr.Reserved || c == netaddr.IPv4Compatible:
		return classReserved
	}
	return classNever // invalid, unspecified, multicast, broadcast
}

// policyVerdict is the built-in classification of one address.
type policyVerdict struct {
	class  policyClass
	prefix netip.Prefix // the refused range; a rule inside it lifts a refusal
	reason string
	form   string        // the IPv6 form reason is about the embedded IPv4 address of, if any
	inner  [2]netip.Addr // the IPv4 addresses such a form embeds (the zero Addr when unused)
}

// embedding is an IPv6 range whose addresses carry an IPv4 address that a
// gateway, a relay or the kernel may deliver them to.
type embedding struct {
	prefix netip.Prefix
	form   string
	inner  func(b [16]byte) [2]netip.Addr
}

func v4At(b [16]byte, i int) netip.Addr { return netip.AddrFrom4([4]byte(b[i : i+4])) }

// policyEmbeddings are judged by the IPv4 addresses they embed.
var policyEmbeddings = []embedding{
	// NAT64 (RFC 6052): the IPv4 address in the last 32 bits.
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64", func(b [16]byte) [2]netip.Addr { return [2]netip.Addr{v4At(b, 12)} }},
	// IPv4-translated (RFC 2765, SIIT): ::ffff:0:a.b.c.d.
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "IPv4-translated", func(b [16]byte) [2]netip.Addr { return [2]netip.Addr{v4At(b, 12)} }},
	// 6to4 (RFC 3056): 2002:AABB:CCDD::/48 is the site at a.b.c.d.
	{netip.MustParsePrefix("2002::/16"), "6to4", func(b [16]byte) [2]netip.Addr { return [2]netip.Addr{v4At(b, 2)} }},
	// Teredo (RFC 4380): the server's IPv4 address in bits 32-63, the
	// client's (its NAT's public address) in the last 32 bits, inverted.
	{netip.MustParsePrefix("2001::/32"), "Teredo", func(b [16]byte) [2]netip.Addr {
		client := v4At(b, 12).As4()
		for i := range client {
			client[i] ^= 0xff
		}
		return [2]netip.Addr{v4At(b, 4), netip.AddrFrom4(client)}
	}},
}

// classifyPolicyAddr classifies an unmapped, zoneless address without
// allocating. An IPv6 form that embeds IPv4 addresses is classified by the
// worst of them: public only if each is, never lifted if one never is,
// and otherwise refused unless a rule inside the form's range allows it
// (AllowPrivate does not: a lab opens its LAN, not tunnels to it).
func classifyPolicyAddr(ip netip.Addr) policyVerdict {
	if ip.Is4() {
		return classifyRanges(ip)
	}
	for i := range policyEmbeddings {
		em := &policyEmbeddings[i]
		if !em.prefix.Contains(ip) {
			continue
		}
		v := policyVerdict{form: em.form, inner: em.inner(ip.As16())}
		for _, in := range v.inner {
			if !in.IsValid() {
				continue
			}
			iv := classifyRanges(in)
			if iv.class <= v.class { // public, or no worse than one already seen
				continue
			}
			v.class, v.reason = iv.class, iv.reason
		}
		if v.class == classPublic {
			v.reason = ""
			return v
		}
		if v.class != classNever {
			v.class = classReserved
		}
		v.prefix = em.prefix
		return v
	}
	return classifyRanges(ip)
}

// classifyRanges classifies ip by the special-purpose range it lies in.
func classifyRanges(ip netip.Addr) policyVerdict {
	c, prefix := netaddr.Classify(ip)
	class := policyClassOf(c)
	if class == classPublic {
		return policyVerdict{}
	}
	return policyVerdict{class: class, prefix: prefix, reason: c.String()}
}

// lifts reports whether an allow rule matching the address is specific
// enough to lift the built-in refusal v.
func (r *Rule) lifts(v policyVerdict) bool {
	return v.class != classNever && r.Prefix.Bits() >= v.prefix.Bits() && v.prefix.Contains(r.Prefix.Addr())
}

// Check decides one resolved destination: nil means allowed. A refusal is a
// *wire.Error with Status wire.StatusNotAllowed that wraps ErrNotAllowed.
// ip may be an IPv4-mapped IPv6 address; it is unmapped before any check.
// A nil *Policy is the default policy. Check does not allocate when it
// allows.
func (p *Policy) Check(ip netip.Addr, port uint16) error {
	if !ip.IsValid() {
		return refusePolicy(ip, port, "invalid address")
	}
	if ip.Zone() != "" {
		return refusePolicy(ip, port, "address has a zone")
	}
	ip = ip.Unmap()
	v := classifyPolicyAddr(ip)
	if v.class == classNever {
		return refuseVerdict(ip, port, v)
	}
	if p == nil {
		p = &defaultPolicy
	}
	if p.Own != nil && p.ownListener(ip, port, v) {
		return refusePolicy(ip, port, "a port the exit itself listens on")
	}
	if p.Own != nil && p.ownBroadcast(ip, v) {
		return refusePolicy(ip, port, "a broadcast address of the exit's own network")
	}
	if p.Own != nil && p.isOwn(ip, v) && !p.ownLifted(ip, port) {
		return refusePolicy(ip, port, "the exit's own address")
	}
	addrOK := v.class == classPublic || v.class == classPrivate && p.AllowPrivate
	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.Prefix.Contains(ip) || !r.Ports.Contains(port) {
			continue
		}
		if !r.Allow {
			return refusePolicy(ip, port, fmt.Sprintf("rule %d: %s", i+1, r))
		}
		if addrOK || r.lifts(v) {
			return nil
		}
		return refuseVerdict(ip, port, v)
	}
	if !addrOK {
		return refuseVerdict(ip, port, v)
	}
	deny := p.DenyPorts
	if deny == nil {
		deny = defaultDenyPorts
	}
	for _, r := range deny {
		if r.Contains(port) {
			return refusePolicy(ip, port, "port "+r.String()+" denied")
		}
	}
	return nil
}

// isOwn reports whether ip, or an IPv4 address its IPv6 form v embeds, is
// one of the exit's own, loopback aside.
func (p *Policy) isOwn(ip netip.Addr, v policyVerdict) bool {
	if !ip.IsLoopback() && p.Own.Contains(ip) {
		return true
	}
	for _, in := range v.inner {
		if in.IsValid() && !in.IsLoopback() && p.Own.Contains(in) {
			return true
		}
	}
	return false
}

// ownListener reports whether a listener of the exit's own process
// answers at ip:port, or at an IPv4 address its IPv6 form v embeds.
func (p *Policy) ownListener(ip netip.Addr, port uint16, v policyVerdict) bool {
	if p.Own.listens(ip, port) {
		return true
	}
	for _, in := range v.inner {
		if in.IsValid() && p.Own.listens(in, port) {
			return true
		}
	}
	return false
}

// ownBroadcast reports whether ip, or an IPv4 address its IPv6 form v
// embeds, is a broadcast address of the exit's own networks.
func (p *Policy) ownBroadcast(ip netip.Addr, v policyVerdict) bool {
	if p.Own.broadcast(ip) {
		return true
	}
	for _, in := range v.inner {
		if in.IsValid() && p.Own.broadcast(in) {
			return true
		}
	}
	return false
}

// ownLifted reports whether port is one of OwnPorts, or the first rule
// that matches ip:port allows exactly that address.
func (p *Policy) ownLifted(ip netip.Addr, port uint16) bool {
	for _, r := range p.OwnPorts {
		if r.Contains(port) {
			return true
		}
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Prefix.Contains(ip) && r.Ports.Contains(port) {
			return r.Allow && r.Prefix.IsSingleIP()
		}
	}
	return false
}

func refuseVerdict(ip netip.Addr, port uint16, v policyVerdict) error {
	reason := v.reason + " address"
	if v.form != "" {
		reason = v.form + " form of " + v.reason + " IPv4 address"
	}
	return refusePolicy(ip, port, reason)
}

func refusePolicy(ip netip.Addr, port uint16, reason string) error {
	return &wire.Error{
		Status: wire.StatusNotAllowed,
		Err:    fmt.Errorf("%w: %s (%s)", ErrNotAllowed, netip.AddrPortFrom(ip, port), reason),
	}
}
