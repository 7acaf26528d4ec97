package wire

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"testing"
)

// framesOf is the frame bodies PeekFrame reads from stream.
func framesOf(stream []byte) [][]byte {
	r := bufio.NewReaderSize(bytes.NewReader(stream), MaxFrameLen)
	var out [][]byte
	for {
		body, err := PeekFrame(r)
		if err != nil {
			return out
		}
		out = append(out, append([]byte(nil), body...))
		r.Discard(2 + len(body))
	}
}

// splitAll feeds stream to Split in pieces cut at cuts, and returns the
// bodies, each copied when the next piece arrives (so a body that did not
// stay valid until then shows), and what is left pending.
func splitAll(stream []byte, cuts []int) ([][]byte, []byte) {
	var d Frames
	var got, held [][]byte
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		c = min(max(c, prev), len(stream))
		for _, b := range held {
			got = append(got, append([]byte(nil), b...))
		}
		held = held[:0]
		whole := d.Whole(stream[prev:c])
		d.Split(stream[prev:c], func(body []byte) { held = append(held, body) })
		if whole != len(held) {
			panic(fmt.Sprintf("Whole said %d frames, Split gave %d", whole, len(held)))
		}
		prev = c
	}
	for _, b := range held {
		got = append(got, append([]byte(nil), b...))
	}
	return got, d.Pending()
}

func testStream(t testing.TB, sizes ...int) []byte {
	var b []byte
	for i, n := range sizes {
		p := bytes.Repeat([]byte{byte(i + 1)}, n)
		var err error
		b, err = AppendDatagram(b, Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: uint16(i)}, p)
		if err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestFramesSplit(t *testing.T) {
	stream := testStream(t, 0, 1, 1400, 65000, 3, 60000, 2)
	want := framesOf(stream)
	for _, cuts := range [][]int{
		nil,                  // one piece
		{1},                  // inside the first LEN
		{1, 2, 3, 4, 5},      // byte by byte at the start
		{100, 30000, 100000}, // inside the large frames
		{len(stream) - 1},    // the last byte alone
	} {
		got, pend := splitAll(stream, cuts)
		if len(got) != len(want) || len(pend) != 0 {
			t.Fatalf("cuts %v: %d frames, %d bytes pending; want %d, 0", cuts, len(got), len(pend), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("cuts %v: frame %d differs", cuts, i)
			}
		}
	}
	// Every cut, one byte at a time through a whole stream.
	every := make([]int, len(stream))
	for i := range every {
		every[i] = i
	}
	if got, _ := splitAll(stream, every); len(got) != len(want) {
		t.Fatalf("byte by byte: %d frames, want %d", len(got), len(want))
	}
}

// A frame left pending goes on where Reset says.
func TestFramesReset(t *testing.T) {
	stream := testStream(t, 500, 700)
	var d Frames
	d.Split(stream[:300], func([]byte) { t.Fatal("no frame is whole yet") })
	pend := append([]byte(nil), d.Pending()...)
	if !bytes.Equal(pend, stream[:300]) {
		t.Fatalf("pending %d bytes, want the first 300", len(pend))
	}
	var e Frames
	e.Reset(pend)
	var got [][]byte
	e.Split(stream[300:], func(b []byte) { got = append(got, append([]byte(nil), b...)) })
	want := framesOf(stream)
	if len(got) != 2 || !bytes.Equal(got[0], want[0]) || !bytes.Equal(got[1], want[1]) {
		t.Fatalf("after Reset: %d frames, want 2 equal to the stream's", len(got))
	}
}

// Split cuts any stream, in any pieces, into the frames PeekFrame reads,
// and keeps what is left of the last.
func FuzzFrames(f *testing.F) {
	f.Add(testStream(f, 1, 2, 3), []byte{1, 5, 9})
	f.Add([]byte{0, 5, 1, 2}, []byte{1})
	f.Add([]byte{0xff, 0xff}, []byte{0, 1})
	f.Fuzz(func(t *testing.T, stream, cutBytes []byte) {
		want := framesOf(stream)
		var cuts []int
		pos := 0
		for _, c := range cutBytes {
			pos += int(c) * 7
			cuts = append(cuts, pos)
		}
		got, pend := splitAll(stream, cuts)
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d differs", i)
			}
		}
		used := 0
		for _, b := range want {
			used += 2 + len(b)
		}
		if !bytes.Equal(pend, stream[used:]) {
			t.Fatalf("pending %d bytes, want the %d after the whole frames", len(pend), len(stream)-used)
		}
	})
}
