package nat

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/swarmvpn/swarmvpn/internal/statefile"
)

// loadRecord reads what an earlier run left in the record file into
// st.leftover. A file that cannot be read or parsed is ignored, with a
// warning; it is replaced by the next write.
func (m *Mapper) loadRecord(st *state) {
	path := m.cfg.RecordPath
	if path == "" {
		return
	}
	rs, err := readRecord(path)
	if err != nil {
		m.log.Warn("nat: ignoring the record of mappings an earlier run made", "path", path, "err", err)
		return
	}
	if len(rs) == 0 {
		return
	}
	st.leftover = rs
	m.log.Info("nat: an earlier run did not delete its mappings; deleting them before mapping anything",
		"count", len(rs), "path", path)
}

// saveRecord writes the record file when what it should hold changed:
// the mappings left by an earlier run and not deleted yet, every mapping
// this run holds or still has to delete, and pending (about to be asked
// for). With nothing to hold, the file is removed.
func (m *Mapper) saveRecord(st *state, pending ...recorded) {
	path := m.cfg.RecordPath
	if path == "" {
		return
	}
	rs := slices.Clone(st.leftover)
	for _, e := range st.entries {
		if e.external != 0 && e.via.method != "" {
			rs = append(rs, e.via.rec(e.proto, e.internal, e.external))
		}
	}
	for _, s := range st.stale {
		if s.external != 0 && s.via.method != "" {
			rs = append(rs, s.via.rec(s.proto, s.internal, s.external))
		}
	}
	rs = append(rs, pending...)
	dropped := len(rs) - maxRecorded
	if dropped > 0 {
		rs = rs[dropped:] // the oldest leftovers go first
	}
	text := ""
	if len(rs) > 0 {
		text = string(marshalRecord(rs))
	}
	if st.saved && text == st.written {
		return
	}
	if dropped > 0 {
		m.log.Warn("nat: too many mappings to record; a crash would leave those not recorded on the router",
			"not_recorded", dropped, "recorded", maxRecorded)
	}
	var err error
	if text == "" {
		if err = os.Remove(path); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	} else {
		err = statefile.WriteAtomic(path, []byte(text))
	}
	if err != nil {
		// Mapping goes on; only a crash would now leave a mapping behind.
		m.log.Warn("nat: cannot write the record of mappings; a crash would leave them on the router",
			"path", path, "err", err)
		st.saved = false
		return
	}
	st.written, st.saved = text, true
}

// recover deletes the mappings an earlier run left (st.leftover) that the
// router still holds for this host's address and port, through the gateway
// just found. Those of another router stay recorded for a run behind it;
// those the router could not be asked about now are tried again when the
// gateway is found again, or by the next run.
func (m *Mapper) recover(ctx context.Context, st *state) {
	if len(st.leftover) == 0 {
		return
	}
	var keep []recorded
	other := map[string]gateway{}
	// down names the methods by which the router did not answer: the
	// leftovers still to try by that method are kept without asking, so
	// that a router that stops answering costs one Timeout, not one per
	// leftover, before this run maps anything.
	down := map[string]bool{}
	lists := map[string][]recorded{} // by method: the router's list, read once
	for _, r := range st.leftover {
		if ctx.Err() != nil || st.gw == nil || down[r.Method] {
			keep = append(keep, r)
			continue
		}
		if r.Gateway != st.gw.address() {
			m.log.Info("nat: a mapping an earlier run left is on another router; kept in the record until the exit is behind it again",
				"mapping", r.String())
			keep = append(keep, r)
			continue
		}
		if m.ownsNow(st, r) {
			// This run mapped the same port since: the mapping is live, and
			// what this run holds is recorded and deleted as its own.
			continue
		}
		if r.Client != st.gw.localAddr() {
			m.log.Warn("nat: not deleting a mapping an earlier run left: this host's address changed, so it may now forward to another host; "+
				"if no host of this network uses it, delete it in the router's port forwarding settings",
				"mapping", r.String(), "address", st.gw.localAddr())
			continue
		}
		if m.inUse("tcp", r.Client, r.Internal) || m.inUse("udp", r.Client, r.Internal) {
			// Another program of this host may have mapped it since
			// (NAT-PMP deletes by internal port, and a router may keep no
			// descriptions, or the program is another swarmvpn), or this
			// exit listens there again and maps it anew, which replaces
			// it. Either protocol: a program that maps both sides of a
			// port may hold one (an exit holds a lent port's TCP side,
			// and its UDP side only while a client's UDP association is
			// bound there).
			m.log.Info("nat: not deleting a mapping an earlier run left: a program of this host uses its port now; kept in the record",
				"mapping", r.String())
			keep = append(keep, r)
			continue
		}
		g := st.gw
		if r.Method != g.method() {
			if g = other[r.Method]; g == nil {
				dctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
				d, err := m.dial(dctx, r.Method, r.Gateway, r.Client)
				cancel()
				if err != nil {
					m.log.Warn("nat: cannot delete a mapping an earlier run left; trying again later", "mapping", r.String(), "err", err)
					keep = append(keep, r)
					down[r.Method] = true
					continue
				}
				g, other[r.Method] = d, d
			}
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
		ours, err := g.holds(cctx, r)
		if err == nil && ours {
			err = g.remove(cctx, r.Proto, r.Internal, r.External)
		}
		cancel()
		switch {
		case err != nil && isRefused(err):
			m.log.Warn("nat: the router refused to delete a mapping an earlier run left; "+
				"if it still forwards to this host, delete it in the router's port forwarding settings",
				"mapping", r.String(), "err", err)
		case err != nil:
			m.log.Warn("nat: cannot delete a mapping an earlier run left; trying again later", "mapping", r.String(), "err", err)
			keep = append(keep, r)
			down[r.Method] = true
		case !ours:
			n, ok := m.deletePlaced(ctx, st, g, r, lists)
			if !ok {
				keep = append(keep, r)
				down[r.Method] = true
			} else if n == 0 {
				m.log.Info("nat: a mapping an earlier run left is gone or no longer forwards to this host; left alone",
					"mapping", r.String())
			}
		default:
			m.log.Info("nat: deleted a mapping an earlier run left", "proto", r.Proto, "port", r.Internal,
				"external", r.External, "method", r.Method)
		}
	}
	st.leftover = keep
	m.saveRecord(st)
}

// Bounds on what recover does with a router's mapping list, which comes
// from the network. A mapping they leave is left to its lease, which on an
// IGDv2 router (the only kind that places mappings) ends, within a week.
const (
	// listTimeouts bounds reading a router's list, in Timeouts: mapping
	// waits meanwhile, and a busy LAN's list can be long.
	listTimeouts = 2
	// maxPlaced bounds the mappings deleted for one leftover: a run leaves
	// one, the router having placed it when the port asked for was taken;
	// a list that names more is believed this far.
	maxPlaced = 4
)

// deletePlaced deletes the mappings for r that the router placed at another
// external port than r names: an IGDv2 router asked for a port someone else
// holds chooses another (AddAnyPortMapping), and a run that ended before
// it wrote that one down left r, the port it asked for. They are found in
// the router's list (read once per pass, into lists): to r.Client and
// r.Internal, under our description, and not held by this run. It returns
// how many it deleted, and false when the router did not answer.
func (m *Mapper) deletePlaced(ctx context.Context, st *state, g gateway, r recorded, lists map[string][]recorded) (int, bool) {
	l, ok := lists[r.Method]
	if !ok {
		lctx, cancel := context.WithTimeout(ctx, listTimeouts*m.cfg.Timeout)
		var err error
		l, err = g.list(lctx, m.cfg.Timeout)
		cancel()
		switch {
		case errors.Is(err, errListCut) && ctx.Err() == nil:
			m.log.Warn("nat: the router's list of mappings is too long or too slow to read whole; "+
				"a mapping an earlier run left beyond what was read stays until its lease ends",
				"read", len(l), "err", err)
		case err != nil:
			m.log.Warn("nat: cannot read the router's list of mappings; trying again later", "mapping", r.String(), "err", err)
			return 0, false
		}
		lists[r.Method] = l
	}
	placed := func(p recorded) bool {
		return p.Proto == r.Proto && p.Internal == r.Internal && p.Client == r.Client && p.External != r.External &&
			!m.ownsNow(st, p)
	}
	n, tried := 0, 0
	for _, p := range l {
		if !placed(p) {
			continue
		}
		if tried == maxPlaced {
			m.log.Warn("nat: the router lists more mappings of one port than an earlier run could leave; "+
				"the others stay until their lease ends", "mapping", r.String(), "deleted", n)
			break
		}
		tried++
		cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
		err := g.remove(cctx, p.Proto, p.Internal, p.External)
		cancel()
		if err != nil && !isRefused(err) {
			m.log.Warn("nat: cannot delete a mapping an earlier run left; trying again later", "mapping", p.String(), "err", err)
			return n, false
		}
		if err != nil {
			m.log.Warn("nat: the router refused to delete a mapping an earlier run left; "+
				"if it still forwards to this host, delete it in the router's port forwarding settings",
				"mapping", p.String(), "err", err)
			continue
		}
		n++
		m.log.Info("nat: deleted a mapping an earlier run left, at the external port the router chose",
			"proto", p.Proto, "port", p.Internal, "external", p.External, "asked", r.External, "method", r.Method)
	}
	// Done with, whatever the router answered: another leftover of the
	// same port does not ask again.
	lists[r.Method] = slices.DeleteFunc(l, placed)
	return n, true
}

// ownsNow reports whether r, left by an earlier run, names a mapping this
// run holds or still has to delete at the same router for the same host:
// the same external port, or with NAT-PMP, whose deletion names only the
// internal port, the same internal port. Deleting r would delete this
// run's own mapping; the router replaced the old one when this run mapped
// it again.
func (m *Mapper) ownsNow(st *state, r recorded) bool {
	same := func(w where, proto string, internal, external uint16) bool {
		if external == 0 || w.gw != r.Gateway || w.client != r.Client || proto != r.Proto {
			return false
		}
		return external == r.External || (internal == r.Internal && (r.Method == MethodNATPMP || w.method == MethodNATPMP))
	}
	for _, e := range st.entries {
		if same(e.via, e.proto, e.internal, e.external) {
			return true
		}
	}
	for _, s := range st.stale {
		if same(s.via, s.proto, s.internal, s.external) {
			return true
		}
	}
	return false
}

// portInUse reports whether a socket of this host holds proto port on
// local (or on every address) now, by binding it for a moment. A bind that
// fails for any reason counts as in use: a mapping is then left alone.
func portInUse(proto string, local netip.Addr, port uint16) bool {
	ap := netip.AddrPortFrom(local, port)
	switch proto {
	case "tcp":
		ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
		if err != nil {
			return true
		}
		ln.Close()
	case "udp":
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return true
		}
		c.Close()
	default:
		return true
	}
	return false
}

// dropOwned forgets the leftovers that name a mapping this run now holds
// (ownsNow): the router replaced them when this run mapped the port, and
// this run deletes it as its own.
func (m *Mapper) dropOwned(st *state) {
	if len(st.leftover) > 0 {
		st.leftover = slices.DeleteFunc(st.leftover, func(r recorded) bool { return m.ownsNow(st, r) })
	}
}
