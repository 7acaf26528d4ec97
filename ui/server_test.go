package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/internal/meter"
)

// fakeSnap is a snapshot with a field and byte counters.
type fakeSnap struct {
	Link string `json:"link"`
	In   uint64 `json:"bytes_in"`
	Out  uint64 `json:"bytes_out"`
}

func (f fakeSnap) Bytes() (uint64, uint64) { return f.In, f.Out }

func newTestServer(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.Page == "" {
		cfg.Page = ClientPage
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hs := httptest.NewServer(s.Handler(ctx))
	t.Cleanup(func() { cancel(); hs.Close() })
	return s, hs
}

func get(t *testing.T, url string, mod func(*http.Request)) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if mod != nil {
		mod(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestStatusIsTheSnapshot: /api/status is the snapshot encoded as the
// control socket encodes it, byte for byte.
func TestStatusIsTheSnapshot(t *testing.T) {
	snap := fakeSnap{Link: "up <&>", In: 5, Out: 7}
	_, hs := newTestServer(t, Config{Status: func() Snapshot { return snap }})
	resp, body := get(t, hs.URL+"/api/status", nil)
	var want strings.Builder
	json.NewEncoder(&want).Encode(snap)
	if resp.StatusCode != 200 || body != want.String() || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %q, body %q; want %q", resp.StatusCode, resp.Header.Get("Content-Type"), body, want.String())
	}
}

// TestPageServed: each page and every asset it names are served from the
// binary.
func TestPageServed(t *testing.T) {
	for _, page := range []Page{ClientPage, ExitPage} {
		t.Run(string(page), func(t *testing.T) {
			_, hs := newTestServer(t, Config{Page: page, Status: func() Snapshot { return fakeSnap{} }})
			resp, body := get(t, hs.URL+"/", nil)
			if resp.StatusCode != 200 || !strings.Contains(body, "<title>swarmvpn "+string(page)+"</title>") {
				t.Fatalf("GET /: %d %.200q", resp.StatusCode, body)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("no content security policy: %q", csp)
			}
			for _, ref := range []string{"assets/style.css", "assets/common.js", "assets/" + string(page) + ".js", "assets/icon.svg"} {
				if !strings.Contains(body, `"`+ref+`"`) {
					t.Errorf("the page does not name %s", ref)
				}
				resp, asset := get(t, hs.URL+"/"+ref, nil)
				if resp.StatusCode != 200 || len(asset) == 0 {
					t.Errorf("GET %s: %d, %d bytes", ref, resp.StatusCode, len(asset))
				}
				if strings.Contains(asset, "http://") || strings.Contains(asset, "https://") {
					if !strings.Contains(asset, "http://www.w3.org/2000/svg") {
						t.Errorf("%s names another site: the page must need nothing but this server", ref)
					}
				}
			}
			if resp, _ := get(t, hs.URL+"/nothing", nil); resp.StatusCode != 404 {
				t.Errorf("GET /nothing: %d", resp.StatusCode)
			}
		})
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Config{Page: ClientPage}); err == nil {
		t.Error("New without Status succeeded")
	}
	if _, err := New(Config{Page: "other", Status: func() Snapshot { return fakeSnap{} }}); err == nil {
		t.Error("New with an unknown page succeeded")
	}
}

func TestCheckExposure(t *testing.T) {
	for _, tc := range []struct {
		addr, pass string
		ok         bool
	}{
		{"127.0.0.1:8119", "", true},
		{"[::1]:8119", "", true},
		{"localhost:8119", "", true},
		{"0.0.0.0:8119", "", false},
		{":8119", "", false},
		{"192.168.1.5:8119", "", false},
		{"0.0.0.0:8119", "secret", true},
	} {
		err := CheckExposure(tc.addr, tc.pass, "--ui")
		if (err == nil) != tc.ok {
			t.Errorf("CheckExposure(%q, %q) = %v", tc.addr, tc.pass, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "--ui-pass") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("CheckExposure(%q): %q is not one line naming --ui-pass", tc.addr, err)
		}
	}
}

// TestAccess: a password is asked for when set; without one, only requests
// naming an IP address or localhost are answered.
func TestAccess(t *testing.T) {
	_, open := newTestServer(t, Config{Status: func() Snapshot { return fakeSnap{} }})
	for host, want := range map[string]int{"": 200, "localhost:8119": 200, "[::1]:8119": 200, "evil.example:8119": 421, "127.0.0.1.nip.io": 421} {
		resp, _ := get(t, open.URL+"/api/status", func(r *http.Request) {
			if host != "" {
				r.Host = host
			}
		})
		if resp.StatusCode != want {
			t.Errorf("Host %q: %d, want %d", host, resp.StatusCode, want)
		}
	}
	_, locked := newTestServer(t, Config{Status: func() Snapshot { return fakeSnap{} }, Password: "s3cret"})
	for _, tc := range []struct {
		user, pass string
		auth       bool
		want       int
	}{
		{auth: false, want: 401},
		{"admin", "wrong", true, 401},
		{"", "s3cret", true, 200},
		{"any", "s3cret", true, 200},
	} {
		resp, _ := get(t, locked.URL+"/", func(r *http.Request) {
			r.Host = "vpn.example:8119" // with a password, any name will do
			if tc.auth {
				r.SetBasicAuth(tc.user, tc.pass)
			}
		})
		if resp.StatusCode != tc.want {
			t.Errorf("auth %v %q/%q: %d, want %d", tc.auth, tc.user, tc.pass, resp.StatusCode, tc.want)
		}
		if tc.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("401 without a Basic challenge")
		}
	}
}

// sse reads server-sent events.
type sse struct {
	r *bufio.Reader
}

// next returns the next event's name and data.
func (s sse) next() (string, string, error) {
	var name, data string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && (name != "" || data != ""):
			return name, data, nil
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
}

// OpenStream opens url's event stream for 30 seconds at most; it is closed
// at the end of the test.
func OpenStream(t testing.TB, url string) sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("event stream: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return sse{bufio.NewReader(resp.Body)}
}

// TestStreamSamples: the stream starts with the history and the newest
// snapshot, then brings a rate sample and a snapshot per interval, and
// Serve returns once its context ends.
func TestStreamSamples(t *testing.T) {
	var mu sync.Mutex
	var in, out uint64
	status := func() Snapshot {
		mu.Lock()
		defer mu.Unlock()
		in, out = in+2000, out+1000
		return fakeSnap{Link: "up", In: in, Out: out}
	}
	s, err := New(Config{Page: ClientPage, Status: status, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	st := OpenStream(t, "http://"+ln.Addr().String()+"/api/events")
	if name, data, err := st.next(); err != nil || name != "history" || !strings.Contains(data, `"interval":0.02`) {
		t.Fatalf("first event %q %q %v", name, data, err)
	}
	if name, _, err := st.next(); err != nil || name != "status" {
		t.Fatalf("second event %q %v", name, err)
	}
	var rates int
	for rates < 3 {
		name, data, err := st.next()
		if err != nil {
			t.Fatal(err)
		}
		if name != "rate" {
			continue
		}
		var smp Sample
		if err := json.Unmarshal([]byte(data), &smp); err != nil || smp[1] <= 0 || smp[2] <= 0 || smp[1] < smp[2] {
			t.Fatalf("rate sample %q: %v", data, err)
		}
		rates++
	}
	resp, body := get(t, "http://"+ln.Addr().String()+"/api/history", nil)
	var h History
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &h) != nil || len(h.Samples) < 3 {
		t.Fatalf("history: %d %q", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended, with a stream open")
	}
}

// TestExitStatus: the exit's snapshot reads exit.Stats, and the optional
// parts appear only when given.
func TestExitStatus(t *testing.T) {
	stats := exit.Stats{Clients: 2, Links: 3, FlowsOpen: 9, BytesIn: 100, BytesOut: 10, PolicyRefusals: 4,
		RefusedAllowList: 1, Flows: meter.FlowCounts{Connect: 7, UDP: 2},
		UDP: exit.UDPStats{Active: 2, BytesIn: 50, BytesOut: 5, RefusedTooMany: 6}, Forward: exit.ForwardStats{Active: 1}}
	v := ExitView{Peer: "p", Addrs: []string{"p@192.0.2.1:7843"}, Stats: func() exit.Stats { return stats }}
	s := v.Status()
	if s.Clients != 2 || s.Links != 3 || s.UDPOpen != 2 || s.Forwards != 1 || s.Flows.Connect != 7 {
		t.Errorf("counts: %+v", s)
	}
	if in, out := s.Bytes(); in != 150 || out != 15 {
		t.Errorf("Bytes() = %d, %d; want TCP and UDP together: 150, 15", in, out)
	}
	if s.Refused["policy"] != 4 || s.Refused["allow_list"] != 1 || s.Refused["udp_limit"] != 6 {
		t.Errorf("refused: %v", s.Refused)
	}
	b, _ := json.Marshal(s)
	for _, key := range []string{`"nat"`, `"free_ports"`, `"ports"`} {
		if strings.Contains(string(b), key) {
			t.Errorf("%s present without its source: %s", key, b)
		}
	}
	v.Ports = func() ([]uint16, int) { return []uint16{40001}, 30 }
	v.NAT = func() []NATMapping {
		return []NATMapping{{Protocol: "tcp", External: "198.51.100.1:7843", Internal: 7843}}
	}
	s = v.Status()
	if len(s.Ports) != 1 || s.FreePorts == nil || *s.FreePorts != 30 || len(s.NAT) != 1 {
		t.Errorf("optional parts: %+v", s)
	}
}
