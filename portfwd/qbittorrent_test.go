package portfwd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/syncbuf"
)

// fakeQB is qBittorrent's WebUI API as far as swarmvpn uses it, with a
// state the tests read and change behind the client's back.
type fakeQB struct {
	mu         sync.Mutex
	api        string // what app/webapiVersion answers
	user, pass string
	bypass     bool // "Bypass authentication for clients on localhost"
	down       bool // answers nothing, as when qBittorrent is not running
	sessions   map[string]bool
	prefs      map[string]any
	logins     int // successful logins
	sets       int // setPreferences calls
	nextSID    int
	reannounce []string            // the hashes= of each reannounce
	trackers   map[string][]string // torrent hash -> tracker URLs
}

// fresh452 is what a fresh qBittorrent 4.5.2 reports for the preferences
// swarmvpn looks at.
func fresh452() map[string]any {
	return map[string]any{
		"listen_port": 23456, "random_port": false, "upnp": true,
		"proxy_type": 0, "proxy_ip": "0.0.0.0", "proxy_port": 8080,
		"proxy_peer_connections": false, "proxy_torrents_only": false, "proxy_hostname_lookup": true,
		"dht": true, "pex": true, "lsd": true, "anonymous_mode": false,
	}
}

func newFakeQB(api string) *fakeQB {
	return &fakeQB{api: api, user: "admin", pass: "adminadmin", sessions: map[string]bool{}, prefs: fresh452()}
}

func (f *fakeQB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path == "/api/v2/auth/login" {
		if r.Method != http.MethodPost {
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		r.ParseForm()
		if r.PostForm.Get("username") != f.user || r.PostForm.Get("password") != f.pass {
			fmt.Fprint(w, "Fails.")
			return
		}
		f.nextSID++
		sid := fmt.Sprintf("sid%d", f.nextSID)
		f.sessions[sid] = true
		f.logins++
		http.SetCookie(w, &http.Cookie{Name: "SID", Value: sid, Path: "/", HttpOnly: true})
		fmt.Fprint(w, "Ok.")
		return
	}
	if c, err := r.Cookie("SID"); !f.bypass && (err != nil || !f.sessions[c.Value]) {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	switch r.URL.Path {
	case "/api/v2/app/webapiVersion":
		fmt.Fprint(w, f.api)
	case "/api/v2/app/preferences":
		json.NewEncoder(w).Encode(f.prefs)
	case "/api/v2/app/setPreferences":
		if r.Method != http.MethodPost {
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		r.ParseForm()
		var set map[string]any
		if err := json.Unmarshal([]byte(r.PostForm.Get("json")), &set); err != nil {
			http.Error(w, "Bad Request", http.StatusBadRequest)
			return
		}
		f.sets++
		maps.Copy(f.prefs, set)
	case "/api/v2/torrents/reannounce":
		if r.Method != http.MethodPost {
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		r.ParseForm()
		f.reannounce = append(f.reannounce, r.PostForm.Get("hashes"))
	case "/api/v2/app/version":
		fmt.Fprint(w, "v4.5.2")
	case "/api/v2/torrents/info":
		var list []map[string]string
		for _, h := range slices.Sorted(maps.Keys(f.trackers)) {
			list = append(list, map[string]string{"hash": h})
		}
		json.NewEncoder(w).Encode(list)
	case "/api/v2/torrents/trackers":
		var list []map[string]any
		for _, u := range append([]string{"** [DHT] **", "** [PeX] **"}, f.trackers[r.URL.Query().Get("hash")]...) {
			list = append(list, map[string]any{"url": u, "status": 2})
		}
		json.NewEncoder(w).Encode(list)
	default:
		http.NotFound(w, r)
	}
}

// restart forgets every session, as a restarted qBittorrent does.
func (f *fakeQB) restart() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions = map[string]bool{}
}

func (f *fakeQB) set(key string, v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prefs[key] = v
}

func (f *fakeQB) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// pref returns a preference the way the client would see it after a JSON
// round trip.
func (f *fakeQB) pref(key string) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := json.Marshal(f.prefs[key])
	var v any
	json.Unmarshal(b, &v)
	return v
}

func (f *fakeQB) counts() (logins, sets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins, f.sets
}

// RoundTrip serves a request in memory, so that tests can run inside a
// synctest bubble.
func (f *fakeQB) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		defer r.Body.Close()
	}
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	rec := httptest.NewRecorder()
	f.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// client returns a QBittorrent that reaches f in memory.
func (f *fakeQB) client(user, pass string) *QBittorrent {
	return &QBittorrent{URL: "http://127.0.0.1:8080", Username: user, Password: pass, Client: &http.Client{Transport: f}}
}

func TestQBittorrentSetPort(t *testing.T) {
	for _, tc := range []struct {
		name        string
		api         string
		prefsHave   bool // the preferences already hold announce_port
		wantAnnouce bool
	}{
		{name: "4.5.2", api: "2.8.19"},
		{name: "announce_port in prefs", api: "2.8.19", prefsHave: true, wantAnnouce: true},
		{name: "api 2.9.3", api: "2.9.3", wantAnnouce: true},
		{name: "api 2.11.4", api: "2.11.4", wantAnnouce: true},
		{name: "api 2.10", api: "2.10", wantAnnouce: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeQB(tc.api)
			f.set("random_port", true)
			if tc.prefsHave {
				f.set("announce_port", 0)
			}
			q := f.client("admin", "adminadmin")
			if err := q.SetPort(t.Context(), 51413); err != nil {
				t.Fatal(err)
			}
			if f.pref("listen_port") != 51413.0 || f.pref("random_port") != false || f.pref("upnp") != false {
				t.Fatalf("listen_port %v random_port %v upnp %v, want 51413 false false",
					f.pref("listen_port"), f.pref("random_port"), f.pref("upnp"))
			}
			got := f.pref("announce_port")
			switch {
			case tc.wantAnnouce && got != 51413.0:
				t.Fatalf("announce_port %v, want 51413", got)
			case !tc.wantAnnouce && got != nil:
				t.Fatalf("announce_port %v sent to a version without it", got)
			}
		})
	}
}

func TestQBittorrentSetPortZero(t *testing.T) {
	f := newFakeQB("2.8.19")
	err := f.client("admin", "adminadmin").SetPort(t.Context(), 0)
	if err == nil || !strings.Contains(err.Error(), "port 0") {
		t.Fatalf("SetPort(0): %v, want a refusal", err)
	}
	if logins, sets := f.counts(); logins != 0 || sets != 0 {
		t.Fatalf("SetPort(0) talked to qBittorrent: %d logins, %d sets", logins, sets)
	}
}

// TestQBittorrentRelogin: a restarted qBittorrent forgets the session; the
// client logs in again once and carries on.
func TestQBittorrentRelogin(t *testing.T) {
	f := newFakeQB("2.8.19")
	q := f.client("admin", "adminadmin")
	ctx := t.Context()
	if _, err := q.Preferences(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Preferences(ctx); err != nil {
		t.Fatal(err)
	}
	if logins, _ := f.counts(); logins != 1 {
		t.Fatalf("%d logins for two requests, want 1 (the cookie is kept)", logins)
	}
	f.restart()
	if err := q.SetPort(ctx, 6000); err != nil {
		t.Fatal(err)
	}
	if logins, sets := f.counts(); logins != 2 || sets != 1 {
		t.Fatalf("after a restart: %d logins, %d sets, want 2 and 1", logins, sets)
	}
}

func TestQBittorrentBypass(t *testing.T) {
	f := newFakeQB("2.8.19")
	f.bypass = true
	if err := f.client("", "").SetPort(t.Context(), 6000); err != nil {
		t.Fatal(err)
	}
	if logins, sets := f.counts(); logins != 0 || sets != 1 {
		t.Fatalf("%d logins, %d sets, want 0 and 1", logins, sets)
	}
}

func TestQBittorrentErrors(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name string
		q    func(f *fakeQB) *QBittorrent
		want []string
	}{
		{"bad credentials", func(f *fakeQB) *QBittorrent { return f.client("admin", "wrong") },
			[]string{`rejected the username "admin"`, "Tools > Options > Web UI > Authentication"}},
		{"login needed", func(f *fakeQB) *QBittorrent { return f.client("", "") },
			[]string{"asks for a login", "Bypass authentication for clients on localhost"}},
		{"not running", func(f *fakeQB) *QBittorrent { return &QBittorrent{URL: refused} },
			[]string{"cannot reach qBittorrent WebUI at " + refused + ": connection refused: is qBittorrent running with the WebUI enabled"}},
		{"bad URL", func(f *fakeQB) *QBittorrent { return &QBittorrent{URL: "127.0.0.1:8080"} },
			[]string{`qBittorrent WebUI URL "127.0.0.1:8080": want http://HOST:PORT`}},
		{"not qBittorrent", func(f *fakeQB) *QBittorrent {
			return &QBittorrent{URL: "http://127.0.0.1:8080", Client: &http.Client{Transport: notFound{}}}
		}, []string{"has no /api/v2/app/preferences (HTTP 404)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.q(newFakeQB("2.8.19")).Preferences(t.Context())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

type notFound struct{}

func (notFound) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	http.NotFound(rec, r)
	return rec.Result(), nil
}

// TestQBittorrentRealHTTP runs the default client against the fake over a
// real socket: cookies, forms and the default transport.
func TestQBittorrentRealHTTP(t *testing.T) {
	f := newFakeQB("2.8.19")
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	q := &QBittorrent{URL: srv.URL + "/", Username: "admin", Password: "adminadmin"}
	if err := q.SetPort(t.Context(), 40000); err != nil {
		t.Fatal(err)
	}
	prefs, err := q.Preferences(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if prefs["listen_port"] != 40000.0 {
		t.Fatalf("listen_port %v, want 40000", prefs["listen_port"])
	}
	if logins, _ := f.counts(); logins != 1 {
		t.Fatalf("%d logins, want 1", logins)
	}
	c := q.httpClient()
	if tr, ok := c.Transport.(*http.Transport); !ok || tr.Proxy != nil || c.Timeout != 10*time.Second {
		t.Fatalf("default client: transport %T, timeout %v; want an *http.Transport without Proxy, 10s", c.Transport, c.Timeout)
	}
}

// logBuffer collects log output from another goroutine.
type logBuffer struct{ syncbuf.Buffer }

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

// TestQBittorrentKeep: Keep puts the port back after qBittorrent changes it
// (here while also forgetting its sessions, as a restart does), waits while
// there is no port, follows a new port, and reports a qBittorrent that is
// down once, not at every check.
func TestQBittorrentKeep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeQB("2.8.19")
		logs := &logBuffer{}
		q := f.client("admin", "adminadmin")
		q.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		var port atomic.Uint32
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			q.Keep(ctx, func() uint16 { return uint16(port.Load()) }, 0)
			close(done)
		}()

		// No port yet: nothing is asked or changed.
		synctest.Wait()
		if logins, sets := f.counts(); logins != 0 || sets != 0 || f.pref("listen_port") != 23456.0 {
			t.Fatalf("with no port: %d logins, %d sets, listen_port %v", logins, sets, f.pref("listen_port"))
		}

		port.Store(6000)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if f.pref("listen_port") != 6000.0 {
			t.Fatalf("listen_port %v, want 6000", f.pref("listen_port"))
		}

		// A check that finds the right port changes nothing.
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if _, sets := f.counts(); sets != 1 {
			t.Fatalf("%d sets, want 1", sets)
		}

		f.set("listen_port", 7777)
		f.restart()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if f.pref("listen_port") != 6000.0 {
			t.Fatalf("after a restart on another port: listen_port %v, want 6000", f.pref("listen_port"))
		}
		if logins, _ := f.counts(); logins != 2 {
			t.Fatalf("%d logins, want 2", logins)
		}

		port.Store(6001)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if f.pref("listen_port") != 6001.0 {
			t.Fatalf("after a new port: listen_port %v, want 6001", f.pref("listen_port"))
		}

		f.setDown(true)
		for range 3 {
			time.Sleep(30 * time.Second)
			synctest.Wait()
		}
		if n := logs.count("level=WARN"); n != 1 {
			t.Fatalf("qBittorrent down for 3 checks: %d warnings, want 1\n%s", n, logs.String())
		}
		f.set("listen_port", 1234)
		f.setDown(false)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if f.pref("listen_port") != 6001.0 || logs.count("answers again") != 1 {
			t.Fatalf("after qBittorrent came back: listen_port %v\n%s", f.pref("listen_port"), logs.String())
		}
		if n := logs.count("told qBittorrent to listen"); n != 4 {
			t.Fatalf("%d Info lines for re-applying the port, want 4\n%s", n, logs.String())
		}

		cancel()
		<-done
	})
}

func TestQBittorrentReannounceAndTrackers(t *testing.T) {
	f := newFakeQB("2.8.19")
	f.trackers = map[string][]string{
		"aa": {"http://t1.example:6969/announce", "udp://t2.example:6969"},
		"bb": {"https://secure.example/announce", "http://t1.example:6969/announce"},
	}
	q := f.client("admin", "adminadmin")
	if err := q.Reannounce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if f.reannounce == nil || f.reannounce[0] != "all" {
		t.Errorf("reannounce calls %q, want one with hashes=all", f.reannounce)
	}
	urls, err := q.TrackerURLs(t.Context())
	want := []string{"http://t1.example:6969/announce", "udp://t2.example:6969", "https://secure.example/announce"}
	if err != nil || !slices.Equal(urls, want) {
		t.Errorf("TrackerURLs = %q, %v; want %q", urls, err, want)
	}
	v, err := q.Version(t.Context())
	if err != nil || v != "v4.5.2" {
		t.Errorf("Version = %q, %v", v, err)
	}
}

func TestHTTPSTrackerAdvice(t *testing.T) {
	https := []string{"http://a.example/announce", "https://b.example/announce", "HTTPS://c.example:443/x", "https://b.example/other"}
	for _, tc := range []struct {
		version  string
		trackers []string
		want     string // a part of the advice; "" for none
	}{
		{"v4.5.2", https, "(to b.example, c.example:443)"},
		{"v5.0.4", https, "qBittorrent v5.0.4 announces port 1"},
		{"v5.1.0", https, ""},
		{"v5.2.1", https, ""},
		{"v4.5.2", []string{"http://a.example/announce", "udp://a.example:6969"}, ""},
		{"garbage", https, "Upgrade to qBittorrent 5.1"},
	} {
		got := HTTPSTrackerAdvice(tc.version, tc.trackers)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want it to say %q", tc.version, got, tc.want)
		}
	}
}
