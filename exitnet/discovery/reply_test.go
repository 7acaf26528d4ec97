package discovery

import (
	"bytes"
	"testing"
)

// FuzzReadDescriptors reads what an exit may send after answering a
// descriptor request. Whatever the bytes, the reader stops within
// MaxKnown others, and accepts only descriptors that verify: its own
// under the pinned ID, the others under their own, none of them the pinned
// exit's again.
func FuzzReadDescriptors(f *testing.F) {
	id, other := seededIdentity(f, 1), seededIdentity(f, 2)
	own := marshalTest(f, signTest(f, id, testDescriptor(id.ID())))
	known := marshalTest(f, signTest(f, other, testDescriptor(other.ID())))
	f.Add(own)
	f.Add(append(append([]byte{}, own...), known...))
	f.Add(append(append([]byte{}, own...), known[:len(known)-3]...))
	f.Add(append(append(append([]byte{}, own...), own...), known...))
	f.Add(known)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		d, others, dropped, err := ReadReply(bytes.NewReader(in), id.ID(), testIssued)
		if err != nil {
			if others != nil || dropped != 0 {
				t.Fatalf("failed read returned %d others, %d dropped", len(others), dropped)
			}
			return
		}
		if d.ID != id.ID() {
			t.Fatalf("own descriptor of %s, want %s", d.ID.Short(), id.ID().Short())
		}
		if len(others)+dropped > MaxKnown {
			t.Fatalf("read %d others and dropped %d, more than %d", len(others), dropped, MaxKnown)
		}
		for _, k := range others {
			v, err := k.Signed.Verify(k.Desc.ID, testIssued)
			if err != nil || v.ID == id.ID() || len(v.Addrs) == 0 {
				t.Fatalf("accepted another exit's descriptor %+v: %v", k.Desc, err)
			}
		}
	})
}
