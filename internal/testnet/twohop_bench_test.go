package testnet

import (
	"encoding/binary"
	"io"
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
	chunk := make([]byte, 256<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	var sent int64
	cpu := cpuTime()
	for b.Loop() {
		n, err := c.Write(chunk)
		if err != nil {
			b.Fatal(err)
		}
		sent += int64(n)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	var got int64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil || got != sent {
		b.Fatalf("sink counted %d bytes, sent %d (%v)", got, sent, err)
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(sent>>20), "cpu-ns/MiB")
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
	msg, got := make([]byte, 64), make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
}
