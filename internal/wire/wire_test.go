package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	tests := []struct {
		req  Request
		want []byte
	}{
		{Request{KindConnect, Addr{IP: netip.MustParseAddr("192.0.2.7"), Port: 443}},
			[]byte{1, 1, 1, 192, 0, 2, 7, 0x01, 0xbb}},
		{Request{KindConnect, Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 6881}},
			append(append([]byte{1, 1, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 0x1a, 0xe1)},
		{Request{KindConnect, Addr{Name: "tracker.example", Port: 80}},
			append(append([]byte{1, 1, 3, 15}, "tracker.example"...), 0, 80)},
		{Request{KindUDP, Addr{}}, []byte{1, 2, 1, 0, 0, 0, 0, 0, 0}},
		{Request{Kind(200), Addr{IP: netip.MustParseAddr("::ffff:10.0.0.1"), Port: 1}},
			append(append([]byte{1, 200, 4}, netip.MustParseAddr("::ffff:10.0.0.1").AsSlice()...), 0, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.req.Dst.String(), func(t *testing.T) {
			b, err := tt.req.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, tt.want) {
				t.Fatalf("encoded % x, want % x", b, tt.want)
			}
			// Trailing bytes belong to the stream and must stay unread.
			r := bytes.NewReader(append(b, "payload"...))
			got, err := ReadRequest(r)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.req
			if !want.Dst.IP.IsValid() && want.Dst.Name == "" {
				want.Dst.IP = netip.IPv4Unspecified()
			}
			if got != want {
				t.Fatalf("decoded %+v, want %+v", got, want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "payload" {
				t.Fatalf("left %q unread, want %q", rest, "payload")
			}
		})
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for st := StatusOK; st <= StatusAddrTypeUnsupported; st++ {
		resp := Response{Status: st, Bound: Addr{IP: netip.MustParseAddr("203.0.113.9"), Port: uint16(st) + 40000}}
		b, err := resp.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadResponse(bytes.NewReader(b))
		if err != nil || got != resp {
			t.Fatalf("status %v: got %+v, %v; want %+v", st, got, err, resp)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"version", []byte{2, 1, 1, 1, 2, 3, 4, 0, 80}, ErrVersion},
		{"atyp", []byte{1, 1, 9, 1, 2, 3, 4, 0, 80}, ErrAddrType},
		{"short ipv4", []byte{1, 1, 1, 1, 2}, io.ErrUnexpectedEOF},
		{"short ipv6", []byte{1, 1, 4, 1, 2, 3}, io.ErrUnexpectedEOF},
		{"short name", []byte{1, 1, 3, 10, 'a', 'b'}, io.ErrUnexpectedEOF},
		{"empty name", []byte{1, 1, 3, 0, 0, 80}, ErrName},
		{"name with colon", append([]byte{1, 1, 3, 3}, 'a', ':', 'b', 0, 80), ErrName},
		{"name with NUL", append([]byte{1, 1, 3, 3}, 'a', 0, 'b', 0, 80), ErrName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadRequest(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadRequest: %v, want %v", err, tt.want)
			}
			_, err = ReadResponse(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadResponse: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncodeRejectsBadName(t *testing.T) {
	for _, name := range []string{"a b", "a:b", string(bytes.Repeat([]byte{'a'}, 256))} {
		if _, err := (Request{KindConnect, Addr{Name: name, Port: 1}}).AppendBinary(nil); !errors.Is(err, ErrName) {
			t.Errorf("name %.20q: err %v, want ErrName", name, err)
		}
	}
}

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in      string
		want    Addr
		wantErr bool
	}{
		{"1.2.3.4:80", Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 80}, false},
		{"[2001:db8::2]:6881", Addr{IP: netip.MustParseAddr("2001:db8::2"), Port: 6881}, false},
		{"example.org:65535", Addr{Name: "example.org", Port: 65535}, false},
		{"example.org", Addr{}, true},
		{"example.org:65536", Addr{}, true},
		{"example.org:http", Addr{}, true},
		{"[fe80::1%eth0]:80", Addr{}, true},
		{":80", Addr{}, true},
	}
	for _, tt := range tests {
		got, err := ParseAddr(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseAddr(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("ParseAddr(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		want Status
	}{
		{nil, StatusOK},
		{&Error{Status: StatusNotAllowed}, StatusNotAllowed},
		{fmt.Errorf("dial: %w", &Error{Status: StatusNetworkUnreachable}), StatusNetworkUnreachable},
		{&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", IsNotFound: true}}, StatusHostUnreachable},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, StatusConnectionRefused},
		{&net.OpError{Op: "dial", Err: syscall.ENETUNREACH}, StatusNetworkUnreachable},
		{&net.OpError{Op: "dial", Err: syscall.EHOSTUNREACH}, StatusHostUnreachable},
		{context.DeadlineExceeded, StatusTimeout},
		{errors.New("something else"), StatusGeneralFailure},
	}
	for _, tt := range tests {
		if got := StatusOf(tt.err); got != tt.want {
			t.Errorf("StatusOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// FuzzReadRequest checks that any bytes either decode to a request that
// encodes back to the same bytes, or give an error; never a panic.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte{1, 1, 1, 192, 0, 2, 7, 0x01, 0xbb})
	f.Add(append(append([]byte{1, 1, 3, 15}, "tracker.example"...), 0, 80))
	f.Add(append([]byte{1, 1, 4}, make([]byte, 18)...))
	f.Add([]byte{1, 1, 3, 0})
	f.Add([]byte{1, 9, 9})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		req, err := ReadRequest(r)
		if err != nil {
			return
		}
		b, err := req.AppendBinary(nil)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", req, err)
		}
		if consumed := len(in) - r.Len(); !bytes.Equal(b, in[:consumed]) {
			t.Fatalf("re-encoded % x, read % x", b, in[:consumed])
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	f.Add([]byte{1, 0, 1, 203, 0, 113, 9, 0x9c, 0x40})
	f.Add([]byte{1, 5, 3, 1, 'x', 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		resp, err := ReadResponse(bytes.NewReader(in))
		if err != nil {
			return
		}
		if _, err := resp.AppendBinary(nil); err != nil {
			t.Fatalf("decoded %+v does not encode: %v", resp, err)
		}
	})
}
