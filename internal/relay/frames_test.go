package relay

import (
	"io"
	"net"
	"sync"
	"testing"
)

// frame is the largest payload of one frame of a link (a yamux frame of
// 64 KiB less its 12-byte header).
const frame = 64<<10 - 12

// fullReader is a source whose every read fills what it is given, until
// total bytes are read: a bulk flow, always ahead of its reader.
type fullReader struct {
	net.Conn
	left int
}

func (r *fullReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left)
	r.left -= n
	return n, nil
}

// writeSizes records the size of each write.
type writeSizes struct {
	net.Conn
	sizes []int
}

func (w *writeSizes) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return len(p), nil
}

func (w *writeSizes) CloseWrite() error { return nil }

// A moving flow writes what fills frames of a link exactly: a flow's
// writes fit one frame of a link, two hops' nested link included (64 KiB
// − 112: the nested frame's header and four TLS records' overhead fill
// the rest); a relayed link's writes are whole frames, never a last one
// of a few bytes.
func TestSpliceWritesWholeFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		pool *sync.Pool
		want int
	}{
		{"flow", &bufPool, frame - 100},
		{"relayed link", &largePool, 4 * frame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const chunks = 5
			total := quietSize + chunks*tc.want + 7
			src, dst := &fullReader{left: total}, &writeSizes{}
			n := copyHalf(dst, src, nil, func(error) {}, tc.pool, nil)
			if n != int64(total) {
				t.Fatalf("copied %d bytes, want %d", n, total)
			}
			// The first read fills the quiet buffer and borrows the large
			// one; the last is what is left.
			want := []int{quietSize}
			for range chunks {
				want = append(want, tc.want)
			}
			want = append(want, 7)
			if len(dst.sizes) != len(want) {
				t.Fatalf("writes %v, want %v", dst.sizes, want)
			}
			for i := range want {
				if dst.sizes[i] != want[i] {
					t.Fatalf("writes %v, want %v", dst.sizes, want)
				}
			}
		})
	}
}
