package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// byteUnits are the suffixes parseBytes accepts, lower-cased: SI for k, M
// and G (as network rates are quoted), powers of two for KiB, MiB and GiB.
var byteUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
}

// parseBytes reads an amount of bytes such as 0, 65536, 500k, 10M, 1.5MB
// or 2MiB; a trailing "/s" is allowed, for rates.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	unit, ok := byteUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok || i == 0 {
		return 0, fmt.Errorf("%q is not an amount of bytes", s)
	}
	n, err := strconv.ParseFloat(t[:i], 64)
	if err != nil || n*unit >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is not an amount of bytes", s)
	}
	return int64(n * unit), nil
}

// minRate is the smallest rate limit: below it a flow would wait minutes
// for the 64 KiB a relay buffer holds.
const minRate = 1000

// parseRate reads a rate limit in bytes per second: 0 for none, else at
// least minRate. A rate that is not zero but rounds to it is an error, not
// silently no limit.
func parseRate(s string) (int64, error) {
	n, err := parseBytes(s)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		t := strings.TrimLeft(strings.TrimSpace(s), "0.")
		if t != "" && (t[0] >= '1' && t[0] <= '9') {
			n = 1 // a fraction of a byte: too small, below
		}
	}
	if n > 0 && n < minRate {
		return 0, fmt.Errorf("%q is below the smallest rate, 1k (1000 bytes/s)", s)
	}
	return n, nil
}

// allowList is the set of client peer IDs an exit admits: those given with
// --allow-client and those listed in --allow-clients-file.
type allowList struct {
	static map[link.PeerID]bool
	file   string
	count  int // IDs in the list when it was last loaded
}

// active reports whether the exit restricts its clients at all.
func (a *allowList) active() bool { return len(a.static) > 0 || a.file != "" }

// load reads the file, if any, and returns the allow function of the
// union, with how many IDs it holds.
func (a *allowList) load() (func(link.PeerID) bool, int, error) {
	set := make(map[link.PeerID]bool, len(a.static))
	for id := range a.static {
		set[id] = true
	}
	if a.file != "" {
		ids, err := readAllowFile(a.file)
		if err != nil {
			return nil, 0, err
		}
		for _, id := range ids {
			set[id] = true
		}
	}
	return func(id link.PeerID) bool { return set[id] }, len(set), nil
}

// maxAllowFile bounds what readAllowFile reads: some hundred thousand IDs.
const maxAllowFile = 8 << 20

// readAllowFile reads one peer ID per line; blank lines and everything
// after a # are ignored.
func readAllowFile(path string) ([]link.PeerID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("allow-clients-file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxAllowFile {
		return nil, fmt.Errorf("allow-clients-file %s: %d bytes is too large for a list of peer IDs", path, fi.Size())
	}
	var ids []link.PeerID
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s, _, _ := strings.Cut(sc.Text(), "#")
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		id, err := link.ParsePeerID(s)
		if err != nil {
			return nil, fmt.Errorf("allow-clients-file %s line %d: %w (one peer ID per line, as 'swarmvpn id' prints it on the client's machine)", path, line, err)
		}
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("allow-clients-file %s: %w", path, err)
	}
	return ids, nil
}

// SIGHUP, until ctx ends. A file that does not read keeps the old list.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, e *exit.Server, allowed *allowList, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if allowed.file == "" {
			log.Info("SIGHUP: no allow-clients-file to re-read")
			continue
		}
		allow, n, err := allowed.load()
		if err != nil {
			log.Error("allow-list not reloaded; the old one stays in force", "err", err)
			continue
		}
		dropped := e.SetAllow(allow)
		log.Info("allow-list reloaded", "allowed_clients", n, "disconnected", dropped)
	}
}
