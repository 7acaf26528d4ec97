package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/testnet"
	"github.com/swarmvpn/swarmvpn/portfwd"
)

// TestQBittorrentFindings: with --qbittorrent the report carries doctor's
// findings, the advice names the fix, and the finding is an event.
func TestQBittorrentFindings(t *testing.T) {
	var mu sync.Mutex
	prefs := `{"proxy_type":"SOCKS5","proxy_ip":"127.0.0.1","proxy_port":1,"lsd":true}`
	qb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/api/v2/app/preferences":
			w.Write([]byte(prefs))
		case "/api/v2/app/webapiVersion":
			w.Write([]byte("2.9.3"))
		}
	}))
	defer qb.Close()
	tp := testnet.Start(t, testnet.Options{})
	c, err := client.New(client.Config{Identity: newID(t), Exits: []link.ExitAddr{tp.ExitAddr}, SOCKS: "127.0.0.1:0", Forward: "off",
		QBittorrent: &portfwd.QBittorrent{URL: qb.URL}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var r client.Report
	testnet.WaitFor(t, "qBittorrent's findings in the report", func() bool {
		r = c.Report()
		return r.Link == "up" && r.QBittorrent != nil && len(r.QBittorrent.Findings) > 0
	})
	if !strings.Contains(r.Advice, "doctor --qbittorrent "+qb.URL+" --fix") {
		t.Errorf("advice %q does not name the fix", r.Advice)
	}
	var said bool
	for _, e := range r.Events {
		said = said || e.Kind == client.EventQBittorrent && strings.Contains(e.Text, "lsd")
	}
	if !said {
		t.Errorf("no qbittorrent event in %+v", r.Events)
	}
}
