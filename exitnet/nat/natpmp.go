package nat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
)

const natpmpPort = 5351

// pmpGateway maps ports through NAT-PMP (RFC 6886).
type pmpGateway struct {
	gw, local netip.Addr
	timeout   time.Duration // bounds one request, retransmissions included
}

var _ gateway = (*pmpGateway)(nil)

func (p *pmpGateway) method() string      { return MethodNATPMP }
func (p *pmpGateway) address() netip.Addr { return p.gw }

// client returns a NAT-PMP client whose requests end by ctx's deadline (the
// library takes a timeout, not a context). The library answers only from
// packets whose source is the gateway, and checks version, opcode, result
// code and size.
func (p *pmpGateway) client(ctx context.Context) (*natpmp.Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t := p.timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < t {
			t = left
		}
	}
	if t <= 0 {
		return nil, context.DeadlineExceeded
	}
	return natpmp.NewClientWithLocalAndTimeout(p.gw.AsSlice(), p.local.AsSlice(), t), nil
}

func (p *pmpGateway) externalAddr(ctx context.Context) (netip.Addr, error) {
	c, err := p.client(ctx)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("natpmp external address: %w", err)
	}
	res, err := c.GetExternalAddress()
	if err != nil {
		return netip.Addr{}, pmpError("external address", err)
	}
	return netip.AddrFrom4(res.ExternalIPAddress), nil
}

func (p *pmpGateway) add(ctx context.Context, proto string, internal, want uint16, lifetime time.Duration) (uint16, time.Duration, error) {
	c, err := p.client(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("natpmp map: %w", err)
	}
	secs := max(int(lifetime/time.Second), 1)
	res, err := c.AddPortMapping(proto, int(internal), int(want), secs)
	if err != nil {
		return 0, 0, pmpError("map", err)
	}
	return checkPMPMapping(internal, res.InternalPort, res.MappedExternalPort, res.PortMappingLifetimeInSeconds)
}

func (p *pmpGateway) remove(ctx context.Context, proto string, internal, _ uint16) error {
	c, err := p.client(ctx)
	if err != nil {
		return fmt.Errorf("natpmp delete: %w", err)
	}
	// RFC 6886 3.4: a request with lifetime 0 and external port 0 deletes.
	if _, err := c.AddPortMapping(proto, int(internal), 0, 0); err != nil {
		return pmpError("delete", err)
	}
	return nil
}

func (p *pmpGateway) localAddr() netip.Addr { return p.local }

// holds: NAT-PMP cannot list mappings, but it needs not: a deletion names
// only the internal port of the host that sends it (RFC 6886 3.4), so it
// touches no other host's mapping.
func (p *pmpGateway) holds(context.Context, recorded) (bool, error) { return true, nil }

// list: NAT-PMP cannot list mappings, and needs not: a deletion names the
// internal port, whatever external port the gateway chose.
func (p *pmpGateway) list(context.Context, time.Duration) ([]recorded, error) { return nil, nil }

// checkPMPMapping checks a NAT-PMP mapping answer for the internal port we
// asked for, and returns the external port and the lifetime granted.
func checkPMPMapping(asked, internal, external uint16, lifetime uint32) (uint16, time.Duration, error) {
	switch {
	case internal != asked:
		return 0, 0, &refusedError{fmt.Errorf("natpmp map: gateway answered for internal port %d, not %d", internal, asked)}
	case external == 0:
		return 0, 0, &refusedError{errors.New("natpmp map: gateway mapped external port 0")}
	case lifetime == 0:
		return 0, 0, &refusedError{errors.New("natpmp map: gateway granted a lifetime of 0")}
	}
	return external, time.Duration(lifetime) * time.Second, nil
}

// pmpError describes err from the NAT-PMP library: a result code is the
// gateway refusing, anything else (timeout, ICMP unreachable, a malformed
// answer) is the gateway not answering as one.
func pmpError(op string, err error) error {
	if strings.Contains(err.Error(), "result code") {
		return &refusedError{fmt.Errorf("natpmp %s: gateway refused: %w", op, err)}
	}
	return fmt.Errorf("natpmp %s: %w", op, err)
}
