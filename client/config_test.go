package client

import (
	"strings"
	"testing"
)

func TestCheckExposure(t *testing.T) {
	tests := []struct {
		socks, http string
		auth        bool
		want        string // "" for accepted
	}{
		{"127.0.0.1:1080", "127.0.0.1:8118", false, ""},
		{"[::1]:1080", "localhost:8118", false, ""},
		{"127.0.0.2:1080", "off", false, ""},
		{"[::ffff:127.0.0.1]:1080", "", false, ""},
		{"0.0.0.0:1080", "127.0.0.1:8118", true, ""}, // SOCKS5 with a password may face the LAN
		{"0.0.0.0:1080", "off", false, "--socks-user"},
		{":1080", "off", false, "--socks-user"},
		{"[::]:1080", "off", false, "--socks-user"},
		{"192.168.1.5:1080", "off", false, "--socks-user"},
		{"myhost:1080", "off", false, "--socks-user"},
		{"127.0.0.1:1080", "0.0.0.0:8118", true, "ssh -L"},
		{"127.0.0.1:1080", ":8118", false, "ssh -L"},
		{"127.0.0.1:1080", "[::]:8118", false, "ssh -L"},
	}
	for _, tt := range tests {
		err := checkExposure(tt.socks, tt.http, tt.auth)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("checkExposure(%q, %q, auth %v) = %v, want %q", tt.socks, tt.http, tt.auth, err, tt.want)
		}
	}
}
