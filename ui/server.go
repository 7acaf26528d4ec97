package ui

import (
	"cmp"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/listener"
)

//go:embed assets
var assets embed.FS

// Page is which page the server shows.
type Page string

const (
	ClientPage Page = "client"
	ExitPage   Page = "exit"
)

// Snapshot is what a page shows: a JSON document (the one 'status --json'
// prints) that also tells the bytes carried so far, for the rate chart.
type Snapshot interface {
	// Bytes returns the bytes carried since the start: from the internet
	// (in) and to it (out).
	Bytes() (in, out uint64)
}

// Config configures a Server. The zero value of a field means its default.
type Config struct {
	// Page is the page to show. Required.
	Page Page
	// Status returns the snapshot to show; it is called once per Interval
	// and for each request to /api/status. Required.
	Status func() Snapshot
	// Changed, when set, returns a channel closed at the next change worth
	// showing at once (a link that drops), so that open pages hear of it
	// before the next Interval.
	Changed func() <-chan struct{}
	// Password, when set, is required of every request (HTTP basic
	// authentication, any user name). Without it the page serves loopback
	// only: see CheckExposure.
	Password string
	// Interval is how often open pages get a new snapshot and a rate
	// sample. Default 1s.
	Interval time.Duration
	// History is how far back the rate chart goes. Default 5m.
	History time.Duration
	// MaxStreams caps the live streams open at once. Default 16.
	MaxStreams int
	// Log receives the server's errors. Nil discards them.
	Log *slog.Logger
}

// CheckExposure refuses a status page that others could reach without a
// password: it shows the exit in use, the forwarded port and the traffic,
// and at an exit who its clients are. setting names the flag, for the
// message.
func CheckExposure(addr, password, setting string) error {
	if password == "" && !listener.Loopback(addr) {
		return fmt.Errorf("%s %s would show this machine's status page to anyone who reaches the address: "+
			"listen on a loopback address (127.0.0.1:8119), or set %s-pass", setting, addr, setting)
	}
	return nil
}

// Sample is the byte rates over one Interval: at (Unix milliseconds), in
// and out (bytes per second).
type Sample [3]float64

// Server serves a status page. New validates its Config; Serve serves it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	page    []byte
	streams chan struct{} // a token per open stream

	mu      sync.Mutex
	latest  []byte   // the newest snapshot as JSON
	samples []Sample // oldest first, at most History/Interval
	seq     uint64   // samples taken since the start
	news    chan struct{}
}

// New validates cfg and returns a Server. Nothing runs until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Status == nil {
		return nil, errors.New("ui: no Status function")
	}
	name := map[Page]string{ClientPage: "assets/client.html", ExitPage: "assets/exit.html"}[cfg.Page]
	if name == "" {
		return nil, fmt.Errorf("ui: unknown page %q", cfg.Page)
	}
	page, err := assets.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	cfg.Interval = cmp.Or(max(cfg.Interval, 0), time.Second)
	cfg.History = cmp.Or(max(cfg.History, 0), 5*time.Minute)
	cfg.MaxStreams = cmp.Or(max(cfg.MaxStreams, 0), 16)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: cfg.Log, page: page, streams: make(chan struct{}, cfg.MaxStreams),
		news: make(chan struct{})}, nil
}

// Handler returns the page's HTTP handler. Streams it serves end when ctx
// ends; until Sample runs, they carry no rate samples.
func (s *Server) Handler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(s.page)
	})
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /api/status", s.serveStatus)
	mux.HandleFunc("GET /api/history", s.serveHistory)
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) { s.serveEvents(ctx, w, r) })
	return s.guard(mux)
}

// guard answers only requests that may see the page, and sets the headers
// that keep it to itself.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		if s.cfg.Password != "" {
			_, pass, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.Password)) != 1 {
				h.Set("WWW-Authenticate", `Basic realm="swarmvpn", charset="UTF-8"`)
				http.Error(w, "the status page needs the password given with --ui-pass", http.StatusUnauthorized)
				return
			}
		} else if !localHost(r.Host) {
			http.Error(w, "this status page answers only at an IP address or localhost", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// localHost reports whether a Host header names this machine in a way no
// DNS name can: an IP address, or localhost.
func localHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

// serveStatus writes the snapshot as 'status --json' prints it.
func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	b, err := encode(s.cfg.Status())
	if err != nil {
		s.log.Error("cannot encode the status", "err", err)
		http.Error(w, "cannot encode the status", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// serveHistory writes the rate samples of the last History.
func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(s.history())
}

// History is what /api/history serves, and the first message of a stream.
type History struct {
	Interval float64  `json:"interval"` // seconds between samples
	Samples  []Sample `json:"samples"`  // oldest first
}

func (s *Server) history() History {
	s.mu.Lock()
	defer s.mu.Unlock()
	return History{Interval: s.cfg.Interval.Seconds(), Samples: append([]Sample{}, s.samples...)}
}

// encode writes v as the control socket does: one line of JSON.
func encode(v any) ([]byte, error) {
	var b strings.Builder
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// Serve serves the page on ln until ctx ends, sampling the status each
// Interval for open pages. It closes ln, and returns after every goroutine
// it started has ended.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           s.Handler(ctx),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.Sample(ctx) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
		cancel()
	case <-ctx.Done():
		// Streams end with ctx; other requests get a moment to finish.
		sctx, stop := context.WithTimeout(context.Background(), time.Second)
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
		stop()
		err = <-errc
	}
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("status page: %w", err)
}

// Sample takes a snapshot each Interval, and at once when Changed says so,
// for the open streams, until ctx ends. Serve runs it; tests that use
// Handler alone run it themselves.
func (s *Server) Sample(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	var prevIn, prevOut uint64
	var prevAt time.Time
	take := func(rate bool) {
		snap := s.cfg.Status()
		b, err := encode(snap)
		if err != nil {
			s.log.Error("cannot encode the status", "err", err)
			return
		}
		in, out := snap.Bytes()
		now := time.Now()
		s.mu.Lock()
		s.latest = b
		if rate && !prevAt.IsZero() && in >= prevIn && out >= prevOut {
			secs := now.Sub(prevAt).Seconds()
			s.samples = append(s.samples, Sample{float64(now.UnixMilli()), float64(in-prevIn) / secs, float64(out-prevOut) / secs})
			if keep := int(s.cfg.History / s.cfg.Interval); len(s.samples) > keep {
				s.samples = append(s.samples[:0], s.samples[len(s.samples)-keep:]...)
			}
			s.seq++
		}
		if rate {
			prevIn, prevOut, prevAt = in, out, now
		}
		close(s.news)
		s.news = make(chan struct{})
		s.mu.Unlock()
	}
	take(true)
	for {
		var changed <-chan struct{}
		if s.cfg.Changed != nil {
			changed = s.cfg.Changed()
		}
		select {
		case <-t.C:
			take(true)
		case <-changed:
			take(false)
		case <-ctx.Done():
			return
		}
	}
}
