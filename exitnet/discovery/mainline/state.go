package mainline

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
)

// The state file keeps the node's ID and its routing table between runs:
//
//	magic    8 bytes  "SVDHTst1"
//	node ID  20 bytes
//	count    2 bytes  big-endian, at most maxStateNodes
//	count × { ID 20 bytes, family 1 byte (4 or 6), IP 4 or 16 bytes, port 2 bytes big-endian }
//
// Nothing may follow the last entry. A file that does not parse is ignored (the node bootstraps
// from the routers instead) and replaced at the next save.
const (
	stateMagic    = "SVDHTst1"
	maxStateNodes = 1000
	maxStateSize  = len(stateMagic) + 20 + 2 + maxStateNodes*(20+1+16+2)
)

// state is what the state file holds.
type state struct {
	ID    [20]byte
	Nodes []stateNode
}

type stateNode struct {
	ID   [20]byte
	Addr netip.AddrPort
}

var errBadState = errors.New("malformed dht state file")

// parseState decodes a state file. It never allocates more than the input bounds.
func parseState(b []byte) (state, error) {
	var st state
	if len(b) > maxStateSize {
		return st, fmt.Errorf("%w: %d bytes, at most %d", errBadState, len(b), maxStateSize)
	}
	if len(b) < len(stateMagic)+22 || string(b[:len(stateMagic)]) != stateMagic {
		return st, fmt.Errorf("%w: bad header", errBadState)
	}
	b = b[len(stateMagic):]
	copy(st.ID[:], b[:20])
	n := int(binary.BigEndian.Uint16(b[20:22]))
	b = b[22:]
	if n > maxStateNodes {
		return st, fmt.Errorf("%w: %d nodes, at most %d", errBadState, n, maxStateNodes)
	}
	st.Nodes = make([]stateNode, 0, n)
	for i := 0; i < n; i++ {
		if len(b) < 21 {
			return state{}, fmt.Errorf("%w: truncated entry %d", errBadState, i)
		}
		var sn stateNode
		copy(sn.ID[:], b[:20])
		fam := b[20]
		b = b[21:]
		var ipLen int
		switch fam {
		case 4:
			ipLen = 4
		case 6:
			ipLen = 16
		default:
			return state{}, fmt.Errorf("%w: entry %d: address family %d", errBadState, i, fam)
		}
		if len(b) < ipLen+2 {
			return state{}, fmt.Errorf("%w: truncated entry %d", errBadState, i)
		}
		a, _ := netip.AddrFromSlice(b[:ipLen])
		port := binary.BigEndian.Uint16(b[ipLen : ipLen+2])
		b = b[ipLen+2:]
		if port == 0 {
			return state{}, fmt.Errorf("%w: entry %d: port 0", errBadState, i)
		}
		sn.Addr = netip.AddrPortFrom(a, port)
		st.Nodes = append(st.Nodes, sn)
	}
	if len(b) != 0 {
		return state{}, fmt.Errorf("%w: %d trailing bytes", errBadState, len(b))
	}
	return st, nil
}

// marshalState encodes st, keeping at most maxStateNodes nodes.
func marshalState(st state) []byte {
	nodes := st.Nodes
	if len(nodes) > maxStateNodes {
		nodes = nodes[:maxStateNodes]
	}
	var buf bytes.Buffer
	buf.WriteString(stateMagic)
	buf.Write(st.ID[:])
	// Count only what can be encoded.
	var body bytes.Buffer
	count := 0
	for _, n := range nodes {
		a := n.Addr.Addr().Unmap()
		if !a.IsValid() || n.Addr.Port() == 0 {
			continue
		}
		body.Write(n.ID[:])
		if a.Is4() {
			body.WriteByte(4)
		} else {
			body.WriteByte(6)
		}
		body.Write(a.AsSlice())
		body.Write(binary.BigEndian.AppendUint16(nil, n.Addr.Port()))
		count++
	}
	buf.Write(binary.BigEndian.AppendUint16(nil, uint16(count)))
	buf.Write(body.Bytes())
	return buf.Bytes()
}

// loadState reads the state file; a missing file is an empty state.
func loadState(path string) (state, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return state{}, nil
	}
	if err != nil {
		return state{}, fmt.Errorf("read dht state: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(maxStateSize)+1))
	if err != nil {
		return state{}, fmt.Errorf("read dht state %s: %w", path, err)
	}
	st, err := parseState(b)
	if err != nil {
		return state{}, fmt.Errorf("read dht state %s: %w", path, err)
	}
	return st, nil
}

// saveState writes the state file atomically (temporary file, then rename).
func saveState(path string, st state) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save dht state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(marshalState(st)); err != nil {
		tmp.Close()
		return fmt.Errorf("save dht state %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save dht state %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save dht state %s: %w", path, err)
	}
	return nil
}
