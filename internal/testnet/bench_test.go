package testnet

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// Each benchmark runs over the whole in-process path (SOCKS5 → pool → TLS
// 1.3 + yamux link → exit → target) and, as a /direct sub-benchmark, over
// a plain TCP connection to the same target, so the two can be compared in
// one run.

type dialFunc func(b *testing.B, addr string) net.Conn

func paths(b *testing.B) map[string]dialFunc {
	tp := Start(b, Options{})
	return map[string]dialFunc{
		"direct": func(b *testing.B, addr string) net.Conn {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			return c
		},
		"swarmvpn": func(b *testing.B, addr string) net.Conn {
			c, _, err := SOCKS5Dial(b.Context(), tp.SOCKS, addr)
			if err != nil {
				b.Fatal(err)
			}
			return c
		},
	}
}

// sink reads until EOF and answers with the byte count.
func sink(c net.Conn) {
	n, _ := io.Copy(io.Discard, c)
	binary.Write(c, binary.BigEndian, n)
}

// BenchmarkBulkUpload pushes one flow's bytes to a sink.
func BenchmarkBulkUpload(b *testing.B) {
	tg := StartTarget(b, "127.0.0.1:0", sink)
	chunk := make([]byte, 256<<10)
	for _, name := range []string{"direct", "swarmvpn"} {
		dial := paths(b)[name]
		b.Run(name, func(b *testing.B) {
			c := dial(b, tg.Addr)
			defer c.Close()
			uploadLoop(b, c, chunk)
		})
	}
}

// uploadLoop writes chunk to c, a flow to a sink, for each iteration, then
// checks the sink's count and reports the CPU time per MiB.
func uploadLoop(b *testing.B, c net.Conn, chunk []byte) {
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

// BenchmarkFlowSetup opens a flow, exchanges one byte and closes it: the
// cost of a new connection as a torrent client sees it.
func BenchmarkFlowSetup(b *testing.B) {
	tg := StartTarget(b, "127.0.0.1:0", Echo)
	for _, name := range []string{"direct", "swarmvpn"} {
		dial := paths(b)[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			buf := []byte{42}
			for b.Loop() {
				c := dial(b, tg.Addr)
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 42 {
					b.Fatalf("echo: %v %v", buf, err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkEcho64 is request/response latency on an open flow.
func BenchmarkEcho64(b *testing.B) {
	tg := StartTarget(b, "127.0.0.1:0", Echo)
	for _, name := range []string{"direct", "swarmvpn"} {
		dial := paths(b)[name]
		b.Run(name, func(b *testing.B) {
			c := dial(b, tg.Addr)
			defer c.Close()
			echoLoop(b, c)
		})
	}
}

// echoLoop sends 64 bytes on c, a flow to an echo target, and reads them
// back, once per iteration.
func echoLoop(b *testing.B, c net.Conn) {
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
