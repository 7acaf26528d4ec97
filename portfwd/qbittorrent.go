package portfwd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// QBittorrent talks to qBittorrent's WebUI API (v2): it reads and changes
// the preferences, and keeps qBittorrent's listen port equal to the
// forwarded port. Its methods are safe for concurrent use; its fields must
// not change once one has been called.
type QBittorrent struct {
	// URL is the WebUI's address, e.g. http://127.0.0.1:8080.
	URL string
	// Username and Password log in to the WebUI. Empty: rely on the
	// WebUI's "Bypass authentication for clients on localhost".
	Username, Password string
	// Client makes the requests; it gets a cookie jar of its own when it
	// has none. Nil: a client with a 10s timeout that never uses a proxy
	// from the environment (the WebUI is local; HTTP_PROXY would leak it).
	Client *http.Client
	Log    *slog.Logger

	once   sync.Once
	client *http.Client
}

// qbAnnouncePort is the first WebUI API version with the announce_port
// preference.
var qbAnnouncePort = [3]int{2, 9, 3}

// maxQBAnswer bounds what is read of one WebUI answer; the preferences are
// a few kilobytes.
const maxQBAnswer = 4 << 20

// Preferences returns qBittorrent's preferences as the WebUI API reports
// them (GET /api/v2/app/preferences). Numbers are float64.
func (q *QBittorrent) Preferences(ctx context.Context) (map[string]any, error) {
	body, err := q.call(ctx, http.MethodGet, "/api/v2/app/preferences", nil)
	if err != nil {
		return nil, err
	}
	var prefs map[string]any
	if err := json.Unmarshal(body, &prefs); err != nil || prefs == nil {
		return nil, fmt.Errorf("qBittorrent WebUI at %s: its preferences are not a JSON object (%v): is that qBittorrent's WebUI?", q.URL, err)
	}
	return prefs, nil
}

// SetPreferences changes the preferences named in prefs and leaves the
// others alone (POST /api/v2/app/setPreferences). qBittorrent ignores keys
// and value types it does not know, silently: read the preferences back to
// be sure.
func (q *QBittorrent) SetPreferences(ctx context.Context, prefs map[string]any) error {
	if len(prefs) == 0 {
		return nil
	}
	b, err := json.Marshal(prefs)
	if err != nil {
		return fmt.Errorf("encode qBittorrent preferences: %w", err)
	}
	_, err = q.call(ctx, http.MethodPost, "/api/v2/app/setPreferences", url.Values{"json": {string(b)}})
	return err
}

// SetPort tells qBittorrent to listen on port, with no random port and no
// UPnP/NAT-PMP, and to announce port to trackers where its version can
// (WebUI API 2.9.3 and newer, or preferences that hold announce_port).
// Port 0 is refused: qBittorrent would take it as "any port".
func (q *QBittorrent) SetPort(ctx context.Context, port uint16) error {
	return q.setPort(ctx, port, nil)
}

// setPort is SetPort with the preferences already read, or nil.
func (q *QBittorrent) setPort(ctx context.Context, port uint16, prefs map[string]any) error {
	if port == 0 {
		return errors.New("set qBittorrent's listen port: refusing port 0, which qBittorrent takes as any port; want the forwarded port")
	}
	set := map[string]any{"listen_port": int(port), "random_port": false, "upnp": false}
	announce, err := q.hasAnnouncePort(ctx, prefs)
	if err != nil {
		return fmt.Errorf("set qBittorrent's listen port to %d: %w", port, err)
	}
	if announce {
		set["announce_port"] = int(port)
	}
	if err := q.SetPreferences(ctx, set); err != nil {
		return fmt.Errorf("set qBittorrent's listen port to %d: %w", port, err)
	}
	return nil
}

// hasAnnouncePort tells whether this qBittorrent knows the announce_port
// preference. prefs may be nil; they are read only when the version does
// not settle it.
func (q *QBittorrent) hasAnnouncePort(ctx context.Context, prefs map[string]any) (bool, error) {
	body, err := q.call(ctx, http.MethodGet, "/api/v2/app/webapiVersion", nil)
	if err != nil {
		return false, err
	}
	if v, ok := parseAPIVersion(string(body)); ok && !versionLess(v, qbAnnouncePort) {
		return true, nil
	}
	if prefs == nil {
		if prefs, err = q.Preferences(ctx); err != nil {
			return false, err
		}
	}
	_, ok := prefs["announce_port"]
	return ok, nil
}

// Reannounce asks qBittorrent to announce every torrent to its trackers
// now (POST /api/v2/torrents/reannounce, hashes=all): after the forwarded
// port changes, trackers would otherwise hand out the old one until the
// next regular announce, half an hour or more later.
func (q *QBittorrent) Reannounce(ctx context.Context) error {
	if _, err := q.call(ctx, http.MethodPost, "/api/v2/torrents/reannounce", url.Values{"hashes": {"all"}}); err != nil {
		return fmt.Errorf("ask qBittorrent to re-announce: %w", err)
	}
	return nil
}

// Version returns qBittorrent's own version, e.g. "v4.5.2"
// (GET /api/v2/app/version).
func (q *QBittorrent) Version(ctx context.Context) (string, error) {
	body, err := q.call(ctx, http.MethodGet, "/api/v2/app/version", nil)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(body)), nil
}

// maxTrackerTorrents bounds how many torrents TrackerURLs looks at.
const maxTrackerTorrents = 500

// TrackerURLs returns the tracker URLs of qBittorrent's torrents (of the
// first maxTrackerTorrents), each once, in the order first seen. The
// pseudo-trackers "** [DHT] **", "** [PeX] **" and "** [LSD] **" are left
// out.
func (q *QBittorrent) TrackerURLs(ctx context.Context) ([]string, error) {
	body, err := q.call(ctx, http.MethodGet, "/api/v2/torrents/info", nil)
	if err != nil {
		return nil, err
	}
	var torrents []struct {
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal(body, &torrents); err != nil {
		return nil, fmt.Errorf("qBittorrent WebUI at %s: its torrent list is not what this version knows (%v)", q.URL, err)
	}
	seen := map[string]bool{}
	var urls []string
	for i, t := range torrents {
		if i == maxTrackerTorrents {
			break
		}
		body, err := q.call(ctx, http.MethodGet, "/api/v2/torrents/trackers?hash="+url.QueryEscape(t.Hash), nil)
		if err != nil {
			return urls, err
		}
		var trackers []struct {
			URL string `json:"url"`
		}
		if json.Unmarshal(body, &trackers) != nil {
			continue
		}
		for _, tr := range trackers {
			if strings.HasPrefix(tr.URL, "** [") || seen[tr.URL] {
				continue
			}
			seen[tr.URL] = true
			urls = append(urls, tr.URL)
		}
	}
	return urls, nil
}

// parseAPIVersion reads a WebUI API version such as "2.8.19".
func parseAPIVersion(s string) ([3]int, bool) {
	var v [3]int
	parts := strings.Split(strings.TrimPrefix(strings.TrimSpace(s), "v"), ".")
	if len(parts) == 0 || len(parts) > 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func versionLess(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// Keep holds qBittorrent's listen port at port(): it checks at once and then
// every every (default 30s) until ctx ends, and calls SetPort when
// qBittorrent listens elsewhere, as after it restarts with a random port or
// the user changes it. port() returning 0 means no port yet: nothing is
// done. A failure is logged once at Warn, its repeats at Debug, until a
// check succeeds.
func (q *QBittorrent) Keep(ctx context.Context, port func() uint16, every time.Duration) {
	if every <= 0 {
		every = 30 * time.Second
	}
	log := q.logger()
	tick := time.NewTicker(every)
	defer tick.Stop()
	failing := "" // the failure last logged at Warn, until a check succeeds
	for {
		if p := port(); p != 0 {
			err := q.keep(ctx, p)
			switch {
			case ctx.Err() != nil:
				return
			case err == nil && failing != "":
				log.Info("qBittorrent's WebUI answers again", "port", p)
				failing = ""
			case err == nil:
			case err.Error() != failing:
				log.Warn("cannot keep qBittorrent on the forwarded port; will retry", "port", p, "err", err)
				failing = err.Error()
			default:
				log.Debug("cannot keep qBittorrent on the forwarded port; will retry", "port", p, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// keep makes one check of Keep.
func (q *QBittorrent) keep(ctx context.Context, port uint16) error {
	prefs, err := q.Preferences(ctx)
	if err != nil {
		return err
	}
	cur, ok := number(prefs["listen_port"])
	ann, hasAnn := prefs["announce_port"]
	annPort, _ := number(ann)
	if ok && cur == float64(port) && (!hasAnn || annPort == float64(port)) {
		return nil
	}
	if err := q.setPort(ctx, port, prefs); err != nil {
		return err
	}
	q.logger().Info("told qBittorrent to listen on the forwarded port", "port", port, "was", prefs["listen_port"])
	return nil
}

func (q *QBittorrent) logger() *slog.Logger {
	if q.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return q.Log
}

func (q *QBittorrent) httpClient() *http.Client {
	q.once.Do(func() {
		jar, _ := cookiejar.New(nil) // never fails without options
		if q.Client != nil {
			c := *q.Client
			if c.Jar == nil {
				c.Jar = jar
			}
			q.client = &c
			return
		}
		q.client = &http.Client{
			Timeout: 10 * time.Second,
			Jar:     jar,
			Transport: &http.Transport{
				Proxy:               nil, // the WebUI is reached directly, whatever HTTP_PROXY says
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
				MaxIdleConns:        2,
				IdleConnTimeout:     time.Minute,
				TLSHandshakeTimeout: 5 * time.Second,
			},
		}
	})
	return q.client
}

// call sends one API request. When qBittorrent answers 403 (no session, or
// one it forgot when it restarted) it logs in and tries once more.
func (q *QBittorrent) call(ctx context.Context, method, path string, form url.Values) ([]byte, error) {
	body, status, err := q.send(ctx, method, path, form)
	if err == nil && status == http.StatusForbidden {
		if q.Username == "" && q.Password == "" {
			return nil, fmt.Errorf("qBittorrent WebUI at %s asks for a login: give its username and password "+
				"(Tools > Options > Web UI > Authentication), or tick \"Bypass authentication for clients on localhost\" there", q.URL)
		}
		if err := q.login(ctx); err != nil {
			return nil, err
		}
		body, status, err = q.send(ctx, method, path, form)
		if err == nil && status == http.StatusForbidden {
			return nil, fmt.Errorf("qBittorrent WebUI at %s refused %s right after a successful login (HTTP 403): "+
				"check that its session cookie is not lost (a proxy or another program in between?)", q.URL, path)
		}
	}
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, q.statusError(path, status, body)
	}
	return body, nil
}

func (q *QBittorrent) login(ctx context.Context) error {
	body, status, err := q.send(ctx, http.MethodPost, "/api/v2/auth/login",
		url.Values{"username": {q.Username}, "password": {q.Password}})
	if err != nil {
		return err
	}
	text := strings.TrimSpace(string(body))
	switch {
	case text == "Fails.":
		return fmt.Errorf("qBittorrent WebUI at %s rejected the username %q and its password: "+
			"give the ones set in Tools > Options > Web UI > Authentication", q.URL, q.Username)
	case status == http.StatusForbidden:
		return fmt.Errorf("qBittorrent WebUI at %s refuses to log in (HTTP 403): it bans an address after too many failed logins; "+
			"wait for the ban to end or restart qBittorrent, then give the right username and password", q.URL)
	case status != http.StatusOK:
		return q.statusError("/api/v2/auth/login", status, body)
	case text != "Ok.":
		return fmt.Errorf("qBittorrent WebUI at %s answered the login with %q, not \"Ok.\": is that qBittorrent's WebUI?", q.URL, snippet(body))
	}
	q.logger().Debug("logged in to qBittorrent's WebUI")
	return nil
}

// send makes one request and reads the answer, whatever its status.
func (q *QBittorrent) send(ctx context.Context, method, path string, form url.Values) ([]byte, int, error) {
	base, err := q.base()
	if err != nil {
		return nil, 0, err
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return nil, 0, fmt.Errorf("qBittorrent WebUI request %s: %w", path, err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := q.httpClient().Do(req)
	if err != nil {
		return nil, 0, q.reachError(ctx, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxQBAnswer))
	if err != nil {
		return nil, 0, fmt.Errorf("read qBittorrent WebUI's answer to %s: %w", path, err)
	}
	return b, resp.StatusCode, nil
}

// base returns URL without a trailing slash, once it is known to be an
// http(s) URL.
func (q *QBittorrent) base() (string, error) {
	u, err := url.Parse(q.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("qBittorrent WebUI URL %q: want http://HOST:PORT, e.g. http://127.0.0.1:8080", q.URL)
	}
	return strings.TrimRight(q.URL, "/"), nil
}

// reachError explains a request that got no answer.
func (q *QBittorrent) reachError(ctx context.Context, err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("qBittorrent WebUI at %s: %w", q.URL, ctx.Err())
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach qBittorrent WebUI at %s: %w: is qBittorrent running with the WebUI enabled (Tools > Options > Web UI)?",
			q.URL, syscall.ECONNREFUSED)
	}
	return fmt.Errorf("cannot reach qBittorrent WebUI at %s: %w: check the address, and that qBittorrent runs with the WebUI enabled (Tools > Options > Web UI)",
		q.URL, err)
}

// statusError explains an answer other than 200 OK.
func (q *QBittorrent) statusError(path string, status int, body []byte) error {
	switch status {
	case http.StatusNotFound:
		return fmt.Errorf("qBittorrent WebUI at %s has no %s (HTTP 404): is that qBittorrent's WebUI, version 4.1 or newer?", q.URL, path)
	case http.StatusUnauthorized:
		return fmt.Errorf("qBittorrent WebUI at %s refused %s (HTTP 401): its host header validation or CSRF protection "+
			"rejects this address; use the address it serves on, or add it to Tools > Options > Web UI > Server domains", q.URL, path)
	}
	return fmt.Errorf("qBittorrent WebUI at %s: %s: HTTP %d %q", q.URL, path, status, snippet(body))
}

// snippet is the start of an answer, for error messages.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// number reads a numeric preference, whatever type the JSON decoder or a
// caller gave it.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint16:
		return float64(n), true
	case uint32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}
