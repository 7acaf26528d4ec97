package testnet

import (
	"testing"
)

// The two-hop benchmarks run the in-process path through a relay (SOCKS5
// → pool → link to the relay → relay stream → link to the exit inside it
// → exit → target), for comparison with BenchmarkBulkUpload and
// BenchmarkEcho64 of the one-hop path: CPU time per MiB is the figure to
// compare, all three processes' work being in this one.

// BenchmarkTwoHopBulkUpload pushes one flow's bytes to a sink through a
// relay.
func BenchmarkTwoHopBulkUpload(b *testing.B) {
	th := startTwoHop(b)
	tg := StartTarget(b, "127.0.0.1:0", sink)
	c, _, err := SOCKS5Dial(b.Context(), th.SOCKS, tg.Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	uploadLoop(b, c, make([]byte, 256<<10))
}

// BenchmarkTwoHopEcho64 is one 64-byte round trip on an open flow through
// a relay.
func BenchmarkTwoHopEcho64(b *testing.B) {
	th := startTwoHop(b)
	tg := StartTarget(b, "127.0.0.1:0", Echo)
	c, _, err := SOCKS5Dial(b.Context(), th.SOCKS, tg.Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	echoLoop(b, c)
}
