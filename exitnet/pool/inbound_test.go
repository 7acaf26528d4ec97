package pool

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// FuzzReadInbound reads the header of a stream the exit opens to the
// client. Any bytes give an error or an inbound connection from a valid
// address, whose request encodes back to the bytes read.
func FuzzReadInbound(f *testing.F) {
	for _, req := range []wire.Request{
		{Kind: wire.KindInbound, Dst: wire.Addr{IP: mustAddr("198.51.100.4"), Port: 51413}},
		{Kind: wire.KindInbound, Dst: wire.Addr{IP: mustAddr("2001:db8::1"), Port: 1}},
		{Kind: wire.KindInbound, Dst: wire.Addr{Name: "peer.example", Port: 80}},
		{Kind: wire.KindConnect, Dst: wire.Addr{IP: mustAddr("198.51.100.4"), Port: 80}},
	} {
		b, err := req.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1, 9})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		remote, err := readInbound(r)
		if err != nil {
			if remote.IsValid() {
				t.Fatalf("error %v with address %v", err, remote)
			}
			return
		}
		if !remote.Addr().IsValid() || errors.Is(err, errNotInbound) {
			t.Fatalf("accepted inbound from %v", remote)
		}
		want := wire.Request{Kind: wire.KindInbound, Dst: wire.Addr{IP: remote.Addr(), Port: remote.Port()}}
		b, err := want.AppendBinary(nil)
		if err != nil || !bytes.Equal(b, in[:len(in)-r.Len()]) {
			t.Fatalf("accepted % x as %v, which encodes to % x (%v)", in[:len(in)-r.Len()], remote, b, err)
		}
	})
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
