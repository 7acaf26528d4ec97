package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// writeWait bounds each write to a stream: a page that stops reading is
// dropped rather than held.
const writeWait = 10 * time.Second

// serveEvents streams server-sent events until the page goes away or ctx
// ends: first "history" (the rate samples so far) and "status" (the newest
// snapshot), then for each new snapshot a "rate" event per new sample and
// a "status" event.
func (s *Server) serveEvents(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		http.Error(w, "too many status pages open at once", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{}) // the stream outlives the server's ReadTimeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	bw := bufio.NewWriter(w)

	s.mu.Lock()
	hist := History{Interval: s.cfg.Interval.Seconds(), Samples: append([]Sample{}, s.samples...)}
	latest, seq, news := s.latest, s.seq, s.news
	s.mu.Unlock()
	if latest == nil { // before the first sample
		b, err := encode(s.cfg.Status())
		if err != nil {
			http.Error(w, "cannot encode the status", http.StatusInternalServerError)
			return
		}
		latest = b
	}
	hb, _ := json.Marshal(hist)
	fmt.Fprintf(bw, "retry: 2000\nevent: history\ndata: %s\n\nevent: status\ndata: %s\n", hb, latest)
	for {
		rc.SetWriteDeadline(time.Now().Add(writeWait))
		if bw.Flush() != nil || rc.Flush() != nil {
			return
		}
		select {
		case <-news:
		case <-r.Context().Done():
			return
		case <-ctx.Done():
			return
		}
		s.mu.Lock()
		latest, news = s.latest, s.news
		fresh := min(int(s.seq-seq), len(s.samples))
		samples := append([]Sample{}, s.samples[len(s.samples)-fresh:]...)
		seq = s.seq
		s.mu.Unlock()
		for _, smp := range samples {
			b, _ := json.Marshal(smp)
			fmt.Fprintf(bw, "event: rate\ndata: %s\n\n", b)
		}
		// latest ends in a newline: with the blank line, it ends the event.
		fmt.Fprintf(bw, "event: status\ndata: %s\n", latest)
	}
}
