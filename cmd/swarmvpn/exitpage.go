package main

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/nat"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/portfwd"
	"github.com/swarmvpn/swarmvpn/ui"
	"github.com/urfave/cli/v3"
)

// exitPage builds the exit's status page.
func exitPage(cmd *cli.Command, e *exit.Server, cfg exit.Config, mapper *nat.Mapper, log *slog.Logger) (*ui.Server, error) {
	id := cfg.Link.Identity.ID()
	view := ui.ExitView{Peer: id.String(), Started: time.Now(), Stats: e.Stats}
	view.AddrsNow = func() []string {
		var addrs []string
		for _, a := range e.Addrs() {
			addrs = append(addrs, link.ExitAddr{ID: id, Addr: a}.String())
		}
		return addrs
	}
	if leases, ok := cfg.Ports.(*portfwd.Leases); ok {
		view.Ports = func() ([]uint16, int) { return leases.InUse(), leases.Free() }
	}
	if mapper != nil {
		view.NAT = func() []ui.NATMapping { return natMappings(mapper.Status()) }
	}
	if cfg.DHT != nil {
		view.DHT = e.DHTReport
	}
	return ui.New(ui.Config{Page: ui.ExitPage, Status: func() ui.Snapshot { return view.Status() },
		Password: cmd.String("ui-pass"), Log: log})
}

// natMappings turns the mapper's status into what the status page shows.
func natMappings(st nat.Status) []ui.NATMapping {
	out := make([]ui.NATMapping, 0, len(st.Mappings))
	for _, m := range st.Mappings {
		nm := ui.NATMapping{Protocol: m.Proto, Internal: int(m.Internal), Method: st.Method, Expires: m.Expires, Error: m.Err}
		if m.Active && st.External.IsValid() {
			nm.External = netip.AddrPortFrom(st.External, m.External).String()
		}
		out = append(out, nm)
	}
	return out
}
