package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestLeaseMessages(t *testing.T) {
	var b []byte
	b, _ = AppendLeaseMsg(b, LeaseProbe, ProbeRequest{ID: 0x01020304}.Body())
	b, _ = AppendLeaseMsg(b, LeaseProbe, ProbeResult{ID: 7, TCP: ProbeTCPClosed, UDP: ProbeUDPAnswered}.Body())
	b, _ = AppendLeaseMsg(b, LeaseInboundTCP, []byte{byte(InboundTCPClosed)})
	b, _ = AppendLeaseMsg(b, LeasePublicPort, PublicPort{Port: 40007}.Body())
	b, _ = AppendLeaseMsg(b, 99, []byte("a type from a later version"))
	want := []byte{0, 5, 1, 1, 2, 3, 4, 0, 7, 1, 0, 0, 0, 7, 2, 0, 0, 2, 2, 0, 0, 3, 3, 0x9c, 0x47}
	if !bytes.HasPrefix(b, want) {
		t.Fatalf("encoded %x, want prefix %x", b, want)
	}
	r := bytes.NewReader(b)
	buf := make([]byte, MaxLeaseMsg)
	typ, body, err := ReadLeaseMsg(r, buf)
	if req, perr := ParseProbeRequest(body); err != nil || typ != LeaseProbe || perr != nil || req.ID != 0x01020304 {
		t.Fatalf("probe request: %d %x %v %v", typ, body, err, perr)
	}
	typ, body, err = ReadLeaseMsg(r, buf)
	if res, perr := ParseProbeResult(body); err != nil || typ != LeaseProbe || perr != nil ||
		res != (ProbeResult{ID: 7, TCP: ProbeTCPClosed, UDP: ProbeUDPAnswered}) {
		t.Fatalf("probe result: %d %x %v %v", typ, body, err, perr)
	}
	if typ, body, err = ReadLeaseMsg(r, buf); err != nil || typ != LeaseInboundTCP || !bytes.Equal(body, []byte{0}) {
		t.Fatalf("inbound tcp: %d %x %v", typ, body, err)
	}
	typ, body, err = ReadLeaseMsg(r, buf)
	if pp, perr := ParsePublicPort(body); err != nil || typ != LeasePublicPort || perr != nil || pp.Port != 40007 {
		t.Fatalf("public port: %d %x %v %v", typ, body, err, perr)
	}
	if typ, _, err = ReadLeaseMsg(r, buf); err != nil || typ != 99 {
		t.Fatalf("unknown type: %d %v", typ, err)
	}
	if _, _, err = ReadLeaseMsg(r, buf); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
	for _, bad := range [][]byte{{0, 0}, {1, 2, 3}} {
		if _, _, err := ReadLeaseMsg(bytes.NewReader(bad), buf); !errors.Is(err, ErrLeaseMsg) {
			t.Errorf("%x: %v, want ErrLeaseMsg", bad, err)
		}
	}
	if _, err := AppendLeaseMsg(nil, 1, make([]byte, MaxLeaseMsg)); !errors.Is(err, ErrLeaseMsg) {
		t.Errorf("oversized body: %v", err)
	}
	if _, err := ParseProbeResult([]byte{1, 2, 3}); err == nil {
		t.Error("short probe result parsed")
	}
	for _, bad := range [][]byte{nil, {1}, {0, 0}, {0, 0, 1}} {
		if p, err := ParsePublicPort(bad); !errors.Is(err, ErrLeaseMsg) {
			t.Errorf("public port %x: %v, %v", bad, p, err)
		}
	}
	if p, err := ParsePublicPort([]byte{0, 1, 0xff}); err != nil || p.Port != 1 {
		t.Errorf("public port with a longer body: %v, %v", p, err)
	}
}

// FuzzReadLeaseMsg reads a forward stream as both ends do: message after
// message until an error; each one parses or fails cleanly.
func FuzzReadLeaseMsg(f *testing.F) {
	good, _ := AppendLeaseMsg(nil, LeaseProbe, ProbeRequest{ID: 9}.Body())
	good, _ = AppendLeaseMsg(good, LeaseInboundTCP, []byte{1})
	good, _ = AppendLeaseMsg(good, LeasePublicPort, PublicPort{Port: 41000}.Body())
	f.Add(good)
	f.Add([]byte{0, 1})
	f.Add([]byte{0xff, 0xff, 1})
	buf := make([]byte, MaxLeaseMsg)
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for msgs := 0; ; msgs++ {
			if msgs > len(in)/3 {
				t.Fatalf("%d messages from %d bytes", msgs, len(in))
			}
			typ, body, err := ReadLeaseMsg(r, buf)
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrLeaseMsg) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(body) >= MaxLeaseMsg {
				t.Fatalf("body of %d bytes", len(body))
			}
			if typ == LeaseProbe {
				if res, err := ParseProbeResult(body); err == nil && !bytes.Equal(res.Body(), body[:6]) {
					t.Fatalf("probe result %+v re-encodes differently", res)
				}
				ParseProbeRequest(body)
			}
			if typ == LeasePublicPort {
				if p, err := ParsePublicPort(body); err == nil && (p.Port == 0 || !bytes.Equal(p.Body(), body[:2])) {
					t.Fatalf("public port %+v from %x", p, body)
				}
			}
		}
	})
}
