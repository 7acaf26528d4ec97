package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
)

func TestDatagramRoundTrip(t *testing.T) {
	addrs := []Addr{
		{IP: netip.MustParseAddr("198.51.100.4"), Port: 6881},
		{IP: netip.MustParseAddr("2001:db8::7"), Port: 443},
		{Name: "tracker.example", Port: 6969},
	}
	var stream []byte
	payloads := [][]byte{[]byte("d1:ad2:id20:"), {}, bytes.Repeat([]byte{0xab}, 1400)}
	for i, a := range addrs {
		var err error
		stream, err = AppendDatagram(stream, a, payloads[i])
		if err != nil {
			t.Fatal(err)
		}
	}
	r := bytes.NewReader(stream)
	buf := make([]byte, MaxFrameLen)
	for i, want := range addrs {
		body, err := ReadFrame(r, buf)
		if err != nil {
			t.Fatal(err)
		}
		a, p, err := ParseDatagram(body)
		if err != nil || a != want || !bytes.Equal(p, payloads[i]) {
			t.Fatalf("frame %d: %+v %d bytes %v; want %+v %d bytes", i, a, len(p), err, want, len(payloads[i]))
		}
	}
	if _, err := ReadFrame(r, buf); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

func TestDatagramLimits(t *testing.T) {
	a := Addr{IP: netip.MustParseAddr("198.51.100.4"), Port: 1}
	big := make([]byte, 0xffff)
	if _, err := AppendDatagram(nil, a, big); !errors.Is(err, ErrFrame) {
		t.Fatalf("oversized payload: %v", err)
	}
	maxIPv4 := 0xffff - 7
	if b, err := AppendDatagram(nil, a, big[:maxIPv4]); err != nil || len(b) != MaxFrameLen {
		t.Fatalf("largest IPv4 datagram: %d bytes, %v", len(b), err)
	}
	name := Addr{Name: string(bytes.Repeat([]byte{'n'}, 255)), Port: 1}
	if _, err := AppendDatagram(nil, name, big[:MaxDatagram]); err != nil {
		t.Fatalf("MaxDatagram with the longest name: %v", err)
	}
}

func TestParseDatagramRejects(t *testing.T) {
	for _, body := range [][]byte{nil, {1, 1, 2, 3}, {4, 0}, {3}, {3, 5, 'a'}, {3, 0, 0, 1}, {9, 0, 0}} {
		if _, _, err := ParseDatagram(body); err == nil {
			t.Errorf("ParseDatagram(% x) accepted", body)
		}
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0, 10, 1, 2}), make([]byte, MaxFrameLen)); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated frame: %v", err)
	}
}

func TestParseDatagramAllocs(t *testing.T) {
	body, _ := AppendDatagram(nil, Addr{IP: netip.MustParseAddr("2001:db8::7"), Port: 443}, make([]byte, 100))
	if n := testing.AllocsPerRun(100, func() { ParseDatagram(body[2:]) }); n != 0 {
		t.Fatalf("ParseDatagram of an IP datagram allocates %v times", n)
	}
}

func FuzzParseDatagram(f *testing.F) {
	for _, a := range []Addr{{IP: netip.MustParseAddr("1.2.3.4"), Port: 1}, {Name: "x.example", Port: 2}, {IP: netip.MustParseAddr("::1"), Port: 3}} {
		b, _ := AppendDatagram(nil, a, []byte("payload"))
		f.Add(b[2:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, p, err := ParseDatagram(body)
		if err != nil {
			return
		}
		b, err := AppendDatagram(nil, a, p)
		if err != nil {
			t.Fatalf("parsed %+v does not encode: %v", a, err)
		}
		if !bytes.Equal(b[2:], body) {
			t.Fatalf("re-encoded % x, parsed % x", b[2:], body)
		}
	})
}

// FuzzReadFrame reads a UDP association's stream as the exit and the client
// do: frame after frame until the bytes run out. A frame whose body parses
// as a datagram must encode back to the same bytes.
func FuzzReadFrame(f *testing.F) {
	good, _ := AppendDatagram(nil, Addr{IP: netip.MustParseAddr("198.51.100.4"), Port: 6881}, []byte("d1:ad2:id20:"))
	good, _ = AppendDatagram(good, Addr{Name: "tracker.example", Port: 6969}, nil)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{0xff, 0xff, 1})
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 3, 3, 0, 0})
	buf := make([]byte, MaxFrameLen)
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for frames := 0; ; frames++ {
			if frames > len(in)/2 {
				t.Fatalf("%d frames from %d bytes", frames, len(in))
			}
			before := r.Len()
			body, err := ReadFrame(r, buf)
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("ReadFrame: unexpected error %v", err)
				}
				if err == io.EOF && r.Len() != 0 {
					t.Fatalf("EOF with %d bytes left", r.Len())
				}
				return
			}
			frame := in[len(in)-before : len(in)-r.Len()]
			if len(body) != len(frame)-2 {
				t.Fatalf("body of %d bytes from a frame of %d", len(body), len(frame))
			}
			addr, payload, err := ParseDatagram(body)
			if err != nil {
				continue
			}
			again, err := AppendDatagram(nil, addr, payload)
			if err != nil || !bytes.Equal(again, frame) {
				t.Fatalf("frame % x parsed to %+v and %d bytes, which encode to % x (%v)", frame, addr, len(payload), again, err)
			}
		}
	})
}

// FuzzPeekFrame reads a stream of frames through a small-chunked reader
// with PeekFrame, as the exit and the client read several frames per read
// from the link: it must find exactly the frames ReadFrame finds, in order,
// none merged or split, wherever the chunks cut them.
func FuzzPeekFrame(f *testing.F) {
	good, _ := AppendDatagram(nil, Addr{IP: netip.MustParseAddr("198.51.100.4"), Port: 6881}, []byte("d1:ad2:id20:"))
	good, _ = AppendDatagram(good, Addr{Name: "tracker.example", Port: 6969}, nil)
	f.Add(good, uint8(3))
	f.Add(good[:len(good)-1], uint8(1))
	f.Add([]byte{0xff, 0xff, 1}, uint8(0))
	f.Add([]byte{0, 0, 0, 0}, uint8(7))
	buf := make([]byte, MaxFrameLen)
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		want := bytes.NewReader(in)
		br := bufio.NewReaderSize(&chunked{in: in, n: int(chunk) + 1}, MaxFrameLen)
		for frames := 0; ; frames++ {
			if frames > len(in)/2 {
				t.Fatalf("%d frames from %d bytes", frames, len(in))
			}
			wbody, werr := ReadFrame(want, buf)
			body, err := PeekFrame(br)
			if (err == nil) != (werr == nil) || (err != nil && err != werr) {
				t.Fatalf("frame %d: PeekFrame %v, ReadFrame %v", frames, err, werr)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(body, wbody) {
				t.Fatalf("frame %d: %d bytes, want %d", frames, len(body), len(wbody))
			}
			if _, err := br.Discard(2 + len(body)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// chunked returns in at most n bytes per Read.
type chunked struct {
	in []byte
	n  int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.in)
	c.in = c.in[n:]
	return n, nil
}
