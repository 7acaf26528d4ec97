package nat

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
)

// The record file lists the mappings this host may hold on routers, so
// that a run which ended without deleting them (a crash, a kill, a power
// cut) has them deleted by the next one: a lease without end (what a
// router that answers error 725 grants) would otherwise forward a port to
// this host for ever. A mapping is written down before it is asked for,
// and dropped once it is deleted, or once the router refused it or says it
// holds no such mapping: one asked for without an answer stays.
//
// The file is read back as untrusted input: it is size-bounded, checked
// entry by entry, and a file that does not parse is ignored, with a
// warning.
const (
	recordVersion = 1
	// maxRecordFile bounds what is read of the record file: room for
	// maxRecorded mappings of the longest form marshalRecord writes
	// (about 180 bytes each), which must always be read back.
	maxRecordFile = 1 << 20
	// maxRecorded bounds the mappings a record holds (an exit maps two per
	// forwarded port in use, so hundreds with many clients); the oldest left by
	// earlier runs are forgotten first.
	maxRecorded = 4096
)

// recorded is one mapping in the record file: on the router Gateway, spoken
// to with Method, external port External forwards to Client:Internal.
type recorded struct {
	Method   string     `json:"method"`
	Gateway  netip.Addr `json:"gateway"`
	Client   netip.Addr `json:"client"`
	Proto    string     `json:"proto"`
	Internal uint16     `json:"internal"`
	External uint16     `json:"external"`
}

func (r recorded) String() string {
	return fmt.Sprintf("%s %s %d -> %v:%d at %v", r.Method, r.Proto, r.External, r.Client, r.Internal, r.Gateway)
}

type recordDoc struct {
	Version  int        `json:"version"`
	Mappings []recorded `json:"mappings"`
}

// check reports whether r is a mapping this package could have made.
func (r recorded) check() error {
	switch {
	case r.Method != MethodUPnP && r.Method != MethodNATPMP:
		return fmt.Errorf("method %q", clip(r.Method))
	case !r.Gateway.Is4() || !usableGateway(r.Gateway):
		return fmt.Errorf("gateway %v", r.Gateway)
	case !r.Client.Is4() || !r.Client.IsGlobalUnicast():
		return fmt.Errorf("client %v", r.Client)
	case r.Proto != "tcp" && r.Proto != "udp":
		return fmt.Errorf("protocol %q", clip(r.Proto))
	case r.Internal == 0 || r.External == 0:
		return fmt.Errorf("port 0 in %d -> %d", r.External, r.Internal)
	}
	return nil
}

// parseRecord reads the record file's text: every mapping is checked, and
// duplicates are dropped.
func parseRecord(b []byte) ([]recorded, error) {
	if len(b) > maxRecordFile {
		return nil, fmt.Errorf("%w (%d bytes, at most %d)", errTooLarge, len(b), maxRecordFile)
	}
	var doc recordDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if doc.Version != recordVersion {
		return nil, fmt.Errorf("version %d, want %d", doc.Version, recordVersion)
	}
	if len(doc.Mappings) > maxRecorded {
		return nil, fmt.Errorf("%d mappings, at most %d", len(doc.Mappings), maxRecorded)
	}
	var out []recorded
	for i, r := range doc.Mappings {
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("mapping %d: %w", i, err)
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// marshalRecord is the record file's text for rs, in a stable order.
func marshalRecord(rs []recorded) []byte {
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, func(a, b recorded) int {
		return cmp.Or(a.Gateway.Compare(b.Gateway), cmp.Compare(a.Method, b.Method), cmp.Compare(a.Proto, b.Proto),
			cmp.Compare(a.External, b.External), a.Client.Compare(b.Client), cmp.Compare(a.Internal, b.Internal))
	})
	rs = slices.Compact(rs)
	b, _ := json.MarshalIndent(recordDoc{Version: recordVersion, Mappings: rs}, "", "  ") // cannot fail
	return append(b, '\n')
}

// readRecord reads the record file at path; a missing file is an empty
// record.
func readRecord(path string) ([]recorded, error) {
	// Only a regular file: opening a FIFO put there would block Run (and
	// Close) for ever, and a device is no record.
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(&limitedReader{r: f, n: maxRecordFile}); err != nil {
		return nil, err
	}
	return parseRecord(buf.Bytes())
}
