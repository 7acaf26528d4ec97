package socks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
)

// step is one write the client must make and the bytes the proxy answers.
type step struct{ want, reply []byte }

// b joins byte slices and strings into one message.
func b(parts ...any) []byte {
	var out []byte
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			out = append(out, p...)
		case []byte:
			out = append(out, p...)
		case int:
			out = append(out, byte(p))
		}
	}
	return out
}

// scripted plays a proxy over a net.Pipe, which hands each of the client's
// writes to one read: so the script sees how the client split its bytes.
// It reports the first difference on done.
func scripted(t *testing.T, steps []step) (net.Conn, <-chan error) {
	t.Helper()
	client, proxy := net.Pipe()
	done := make(chan error, 1)
	go func() {
		defer proxy.Close()
		buf := make([]byte, 1024)
		for i, s := range steps {
			n, err := proxy.Read(buf)
			if err != nil {
				done <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			if !bytes.Equal(buf[:n], s.want) {
				done <- fmt.Errorf("write %d: % x, want % x", i, buf[:n], s.want)
				return
			}
			if _, err := proxy.Write(s.reply); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	t.Cleanup(func() { client.Close() })
	return client, done
}

var (
	okReply4 = b(5, 0, 0, 1, 10, 0, 0, 1, 0x1f, 0x90) // bound 10.0.0.1:8080
	req4     = b(5, 1, 0, 1, 127, 0, 0, 1, 0, 80)     // CONNECT 127.0.0.1:80
)

func TestHandshake(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:192.0.2.7").As16()
	tests := []struct {
		name    string
		client  Client
		target  string
		steps   []step
		want    netip.AddrPort
		wantErr func(error) bool
	}{
		{name: "stepwise, no authentication", target: "127.0.0.1:80",
			steps: []step{{b(5, 1, 0), b(5, 0)}, {req4, okReply4}},
			want:  netip.MustParseAddrPort("10.0.0.1:8080")},
		{name: "stepwise, password", client: Client{User: "u", Pass: "pw"}, target: "127.0.0.1:80",
			steps: []step{{b(5, 2, 0, 2), b(5, 2)}, {b(1, 1, "u", 2, "pw"), b(1, 0)}, {req4, okReply4}},
			want:  netip.MustParseAddrPort("10.0.0.1:8080")},
		{name: "stepwise, password offered, none chosen", client: Client{User: "u", Pass: "pw"}, target: "127.0.0.1:80",
			steps: []step{{b(5, 2, 0, 2), b(5, 0)}, {req4, okReply4}},
			want:  netip.MustParseAddrPort("10.0.0.1:8080")},
		{name: "stepwise, a name and an IPv6 reply", target: "example.test:443",
			steps: []step{{b(5, 1, 0), b(5, 0)},
				{b(5, 1, 0, 3, 12, "example.test", 1, 0xbb), b(5, 0, 0, 4, mapped[:], 0, 9)}},
			want: netip.MustParseAddrPort("192.0.2.7:9")},
		{name: "pipelined, no authentication", client: Client{Pipelined: true}, target: "[2001:db8::1]:80",
			steps: []step{{b(5, 1, 0, 5, 1, 0, 4, netip.MustParseAddr("2001:db8::1").AsSlice(), 0, 80), b(5, 0, okReply4)}},
			want:  netip.MustParseAddrPort("10.0.0.1:8080")},
		{name: "pipelined, password", client: Client{User: "u", Pass: "pw", Pipelined: true}, target: "127.0.0.1:80",
			steps: []step{{b(5, 1, 2, 1, 1, "u", 2, "pw", req4), b(5, 2, 1, 0, okReply4)}},
			want:  netip.MustParseAddrPort("10.0.0.1:8080")},
		{name: "reply with a name", target: "127.0.0.1:80",
			steps: []step{{b(5, 1, 0), b(5, 0)}, {req4, b(5, 0, 0, 3, 4, "exit", 0, 7)}},
			want:  netip.AddrPortFrom(netip.Addr{}, 7)},
		{name: "refused by the rules", target: "127.0.0.1:80",
			steps: []step{{b(5, 1, 0), b(5, 0)}, {req4, b(5, 2, 0, 1, 0, 0, 0, 0, 0, 0)}},
			wantErr: func(err error) bool {
				re, ok := errors.AsType[*ReplyError](err)
				return ok && re.Code == 2 && err.Error() == `the proxy answered "not allowed by its rules" (SOCKS5 reply 2)`
			}},
		{name: "stepwise, no acceptable method", target: "127.0.0.1:80",
			steps:   []step{{b(5, 1, 0), b(5, 0xff)}},
			wantErr: func(err error) bool { return errors.Is(err, ErrNoMethod) }},
		{name: "pipelined, no acceptable method", client: Client{Pipelined: true}, target: "127.0.0.1:80",
			steps:   []step{{b(5, 1, 0, req4), b(5, 0xff)}},
			wantErr: func(err error) bool { return errors.Is(err, ErrNoMethod) }},
		{name: "password only when the proxy asks", target: "127.0.0.1:80",
			steps:   []step{{b(5, 1, 0), b(5, 2)}},
			wantErr: func(err error) bool { return errors.Is(err, ErrNoMethod) }},
		{name: "wrong password", client: Client{User: "u", Pass: "x"}, target: "127.0.0.1:80",
			steps:   []step{{b(5, 2, 0, 2), b(5, 2)}, {b(1, 1, "u", 1, "x"), b(1, 1)}},
			wantErr: func(err error) bool { return errors.Is(err, errAuth) }},
		{name: "not SOCKS5", target: "127.0.0.1:80",
			steps:   []step{{b(5, 1, 0), b("HTTP/1.0 400")}},
			wantErr: func(err error) bool { return err != nil && err.Error() == "not a SOCKS5 answer (48 54)" }},
		{name: "reply cut short", target: "127.0.0.1:80",
			steps:   []step{{b(5, 1, 0), b(5, 0)}, {req4, b(5, 0)}},
			wantErr: func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, done := scripted(t, tt.steps)
			got, err := tt.client.Handshake(conn, CmdConnect, tt.target)
			conn.Close()
			if perr := <-done; perr != nil && tt.wantErr == nil {
				t.Fatalf("the proxy saw: %v", perr)
			}
			switch {
			case tt.wantErr != nil && !tt.wantErr(err):
				t.Fatalf("error %v is not the one expected", err)
			case tt.wantErr == nil && err != nil:
				t.Fatal(err)
			case tt.wantErr == nil && got != tt.want:
				t.Fatalf("bound %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAppendAddr(t *testing.T) {
	long := string(bytes.Repeat([]byte("a"), 256))
	tests := []struct {
		target string
		want   []byte // nil: an error
	}{
		{"192.0.2.1:80", b(1, 192, 0, 2, 1, 0, 80)},
		{"[::1]:1080", b(4, netip.IPv6Loopback().AsSlice(), 4, 0x38)},
		{"[::ffff:192.0.2.1]:80", b(4, netip.MustParseAddr("::ffff:192.0.2.1").AsSlice(), 0, 80)},
		{"localhost:65535", b(3, 9, "localhost", 0xff, 0xff)},
		{long[:255] + ":1", b(3, 255, long[:255], 0, 1)},
		{long + ":1", nil},
		{"localhost:65536", nil},
		{"localhost", nil},
	}
	for _, tt := range tests {
		got, err := AppendAddr(nil, tt.target)
		if tt.want == nil {
			if err == nil {
				t.Errorf("AppendAddr(%q) = % x, want an error", tt.target, got)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("AppendAddr(%q) = % x, %v; want % x", tt.target, got, err, tt.want)
		}
	}
}

// TestDialCancelled: a proxy that never answers holds Dial only as long as
// its context.
func TestDialCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	held := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			held <- c
		}
	}()
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		c := <-held
		t.Cleanup(func() { c.Close() })
		cancel()
	}()
	if _, err := (Client{Addr: ln.Addr().String()}).Dial(ctx, "127.0.0.1:80"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial to a silent proxy, cancelled: %v, want context.Canceled", err)
	}
}

func FuzzReadReply(f *testing.F) {
	f.Add(okReply4)
	f.Add(b(5, 0, 0, 3, 4, "exit", 0, 7))
	f.Add(b(5, 0, 0, 4, make([]byte, 18)))
	f.Add(b(5, 7, 0, 1))
	f.Fuzz(func(t *testing.T, p []byte) {
		ap, err := readReply(bytes.NewReader(p))
		if err == nil && len(p) < 4+1+2 {
			t.Fatalf("%d bytes gave %v", len(p), ap)
		}
	})
}
