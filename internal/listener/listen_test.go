package listener

import (
	"strings"
	"testing"
)

// TestOpenMalformedHint: the example in the error uses the setting and the
// port the user gave, not another setting's default.
func TestOpenMalformedHint(t *testing.T) {
	tests := []struct{ addr, setting, want string }{
		{"8119", "--http", `--http "8119": want HOST:PORT, e.g. --http 127.0.0.1:8119`},
		{"1080", "--socks", `--socks "1080": want HOST:PORT, e.g. --socks 127.0.0.1:1080`},
		{"localhost", "--metrics", `--metrics "localhost": want HOST:PORT, e.g. --metrics 127.0.0.1:PORT`},
		{"99999", "--listen", `e.g. --listen 127.0.0.1:PORT`},
	}
	for _, tt := range tests {
		ln, err := Open(tt.addr, tt.setting)
		if err == nil {
			ln.Close()
			t.Fatalf("Open(%q) succeeded", tt.addr)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%q, %q) = %v, want it to say %q", tt.addr, tt.setting, err, tt.want)
		}
	}
}
