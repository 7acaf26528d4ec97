package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// qbServer is a fake qBittorrent 4.5.2 WebUI: it wants a login and keeps
// the preferences doctor looks at.
type qbServer struct {
	*httptest.Server
	mu     sync.Mutex
	prefs  map[string]any
	ignore map[string]bool // keys setPreferences silently ignores
	sets   int
}

func newQBServer(t *testing.T) *qbServer {
	q := &qbServer{prefs: map[string]any{
		"listen_port": 23456, "random_port": false, "upnp": true,
		"proxy_type": 0, "proxy_ip": "0.0.0.0", "proxy_port": 8080,
		"proxy_peer_connections": false, "proxy_hostname_lookup": true,
		"dht": true, "pex": true, "lsd": true,
	}, ignore: map[string]bool{}}
	q.Server = httptest.NewServer(http.HandlerFunc(q.serve))
	t.Cleanup(q.Close)
	return q
}

func (q *qbServer) serve(w http.ResponseWriter, r *http.Request) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r.URL.Path == "/api/v2/auth/login" {
		r.ParseForm()
		if r.PostForm.Get("username") != "admin" || r.PostForm.Get("password") != "adminadmin" {
			fmt.Fprint(w, "Fails.")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "SID", Value: "s1", Path: "/"})
		fmt.Fprint(w, "Ok.")
		return
	}
	if c, err := r.Cookie("SID"); err != nil || c.Value != "s1" {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	switch r.URL.Path {
	case "/api/v2/app/webapiVersion":
		fmt.Fprint(w, "2.8.19")
	case "/api/v2/app/preferences":
		json.NewEncoder(w).Encode(q.prefs)
	case "/api/v2/app/setPreferences":
		r.ParseForm()
		var set map[string]any
		if err := json.Unmarshal([]byte(r.PostForm.Get("json")), &set); err != nil {
			http.Error(w, "Bad Request", http.StatusBadRequest)
			return
		}
		q.sets++
		for k, v := range set {
			if !q.ignore[k] {
				q.prefs[k] = v
			}
		}
	default:
		http.NotFound(w, r)
	}
}

func (q *qbServer) state() (map[string]any, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return maps.Clone(q.prefs), q.sets
}

func doctorArgs(q *qbServer, extra ...string) []string {
	return append([]string{"doctor", "--qbittorrent", q.URL, "--qbittorrent-user", "admin", "--qbittorrent-pass", "adminadmin"}, extra...)
}

// TestDoctor: a fresh qBittorrent has findings and doctor fails; --fix
// clears them in one call; then doctor passes.
func TestDoctor(t *testing.T) {
	q := newQBServer(t)
	out, err := runApp(t, doctorArgs(q)...)
	if err == nil || !strings.Contains(err.Error(), "run again with --fix") {
		t.Fatalf("findings without --fix must fail: %v\n%s", err, out)
	}
	for _, want := range []string{
		"✗ proxy_type: the proxy type is none, not SOCKS5", "; fix: proxy_type=2\n",
		"✗ proxy_peer_connections: ", "; fix: proxy_peer_connections=true\n",
		`; fix: proxy_ip="127.0.0.1"`, "; fix: proxy_port=1080\n", "✗ lsd: ", "✗ upnp: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "✗ dht") || strings.Contains(out, doctorSafe) {
		t.Errorf("unexpected output:\n%s", out)
	}
	if _, sets := q.state(); sets != 0 {
		t.Fatalf("doctor without --fix changed %d times", sets)
	}

	out, err = runApp(t, doctorArgs(q, "--fix")...)
	if err != nil {
		t.Fatalf("--fix: %v\n%s", err, out)
	}
	if !strings.HasSuffix(out, doctorSafe+"\n") {
		t.Fatalf("--fix output does not end safe:\n%s", out)
	}
	prefs, sets := q.state()
	if sets != 1 {
		t.Fatalf("--fix made %d setPreferences calls, want 1", sets)
	}
	if prefs["proxy_type"] != 2.0 || prefs["proxy_ip"] != "127.0.0.1" || prefs["proxy_port"] != 1080.0 ||
		prefs["proxy_peer_connections"] != true || prefs["lsd"] != false || prefs["upnp"] != false || prefs["dht"] != true {
		t.Fatalf("after --fix: %v", prefs)
	}

	out, err = runApp(t, doctorArgs(q)...)
	if err != nil || out != doctorSafe+"\n" {
		t.Fatalf("after --fix: %q, %v", out, err)
	}
}

// TestDoctorFixIgnored: what qBittorrent ignores is printed again and fails.
func TestDoctorFixIgnored(t *testing.T) {
	q := newQBServer(t)
	q.ignore["lsd"] = true
	out, err := runApp(t, doctorArgs(q, "--fix")...)
	if err == nil || !strings.Contains(err.Error(), "kept 1 setting unsafe") {
		t.Fatalf("--fix with an ignored key: %v\n%s", err, out)
	}
	_, after, ok := strings.Cut(out, "still wrong after the fixes:\n")
	if !ok || !strings.HasPrefix(after, "✗ lsd: ") || strings.Count(after, "✗") != 1 {
		t.Fatalf("output:\n%s", out)
	}
}

func TestDoctorFlags(t *testing.T) {
	q := newQBServer(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String()
	closed.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{doctorArgs(q, "--socks", "localhost:1080"), `--socks "localhost:1080": want the IP:PORT`},
		{[]string{"doctor", "--qbittorrent", "127.0.0.1:8080"}, `--qbittorrent "127.0.0.1:8080": want the WebUI's URL`},
		{[]string{"doctor", "--qbittorrent", q.URL, "--qbittorrent-user", "admin"}, "--qbittorrent-user and --qbittorrent-pass go together"},
		{[]string{"doctor", "--qbittorrent", q.URL, "--qbittorrent-user", "admin", "--qbittorrent-pass", "x"}, `rejected the username "admin"`},
		{[]string{"doctor", "--qbittorrent", q.URL}, "asks for a login"},
		{[]string{"doctor", "--qbittorrent", refused}, "connection refused: is qBittorrent running with the WebUI enabled"},
	} {
		if _, err := runApp(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, sets := q.state(); sets != 0 {
		t.Fatalf("a failed doctor changed settings")
	}
}

// TestDoctorEnv: the flags come from SWARMVPN_* too; a swarmvpn on another
// port is what qBittorrent must point at.
func TestDoctorEnv(t *testing.T) {
	q := newQBServer(t)
	t.Setenv("SWARMVPN_QBITTORRENT", q.URL)
	t.Setenv("SWARMVPN_QBITTORRENT_USER", "admin")
	t.Setenv("SWARMVPN_QBITTORRENT_PASS", "adminadmin")
	t.Setenv("SWARMVPN_SOCKS", "127.0.0.1:1090")
	t.Setenv("SWARMVPN_FIX", "true")
	if out, err := runApp(t, "doctor"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if prefs, _ := q.state(); prefs["proxy_port"] != 1090.0 {
		t.Fatalf("proxy_port %v, want 1090", prefs["proxy_port"])
	}
}

// TestBinaryDoctorExitCodes: the real process exits 1 with findings and 0
// once they are fixed.
func TestBinaryDoctorExitCodes(t *testing.T) {
	q := newQBServer(t)
	stdout, stderr, code := run(t, doctorArgs(q)...)
	if code != 1 || !strings.Contains(stdout, "✗ proxy_peer_connections") || !strings.HasPrefix(stderr, "swarmvpn: ") {
		t.Fatalf("with findings: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if _, _, code := run(t, doctorArgs(q, "--fix")...); code != 0 {
		t.Fatalf("--fix: exit %d", code)
	}
	stdout, _, code = run(t, doctorArgs(q)...)
	if code != 0 || stdout != doctorSafe+"\n" {
		t.Fatalf("after --fix: exit %d, %q", code, stdout)
	}
	_, stderr, code = run(t, "status", "--state-dir", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "no swarmvpn client is running") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("status with no client: exit %d, %q", code, stderr)
	}
}
