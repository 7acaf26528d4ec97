package client

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/portfwd"
)

// QBittorrentReport is what the client last found in qBittorrent's
// settings ('swarmvpn doctor's findings), when it keeps qBittorrent's port.
type QBittorrentReport struct {
	URL      string    `json:"url"`
	Checked  time.Time `json:"checked"`
	Error    string    `json:"error,omitempty"`    // why the WebUI could not be read
	Findings []string  `json:"findings,omitempty"` // "setting: problem", one per unsafe setting
}

// doctor holds the newest qBittorrent check.
type doctor struct {
	mu   sync.Mutex
	last *QBittorrentReport
}

func (d *doctor) report() *QBittorrentReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		return nil
	}
	r := *d.last
	return &r
}

// checkQBittorrent reads qBittorrent's preferences now and then until ctx
// ends, keeping doctor's findings for the report and noting changes as
// events.
func (c *Client) checkQBittorrent(ctx context.Context, every time.Duration) {
	qb := c.cfg.QBittorrent
	socks := c.socksLn.Addr().(*net.TCPAddr).AddrPort()
	t := time.NewTicker(every)
	defer t.Stop()
	var said string
	for {
		r := &QBittorrentReport{URL: qb.URL, Checked: time.Now()}
		if prefs, err := qb.Preferences(ctx); err != nil {
			r.Error = err.Error()
		} else {
			for _, f := range portfwd.Diagnose(prefs, socks) {
				r.Findings = append(r.Findings, f.Setting+": "+f.Problem)
			}
		}
		if ctx.Err() != nil {
			return
		}
		c.doctor.mu.Lock()
		c.doctor.last = r
		c.doctor.mu.Unlock()
		var now string
		switch {
		case r.Error != "":
			now = "cannot read qBittorrent's settings: " + r.Error
		case len(r.Findings) > 0:
			now = fmt.Sprintf("qBittorrent has %d unsafe setting(s): %s", len(r.Findings), strings.Join(r.Findings, "; "))
		case said != "":
			now = "qBittorrent's settings are safe for swarmvpn"
		}
		if now != said && now != "" {
			c.events.add(EventQBittorrent, now)
		}
		said = now
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// advice returns one line that says what to do when something is wrong,
// or "" when all is well; the most pressing first.
func advice(r Report, forward bool, exits int) string {
	switch {
	case r.Link != "up" && exits == 0 && r.DHT != nil:
		return "No exit known yet: looking for exits on the DHT (see 'dht' in this status); or start with --exit PEERID@HOST:PORT."
	case r.Link != "up" && exits == 0:
		return "No exit known: start with --exit PEERID@HOST:PORT (the line 'swarmvpn exit' prints), or run an exit on your LAN."
	case r.Link == "connecting":
		return "Linking to an exit; flows wait a moment, then fail closed until one answers."
	case r.Link != "up":
		msg := "No exit reachable, so every flow fails closed: check that the exit runs and that its port is open in its firewall"
		if r.LastError != "" {
			msg += " (last error: " + r.LastError + ")"
		}
		return msg + "."
	case forward && r.ForwardedPort == 0:
		return "Not connectable: this exit lends no forwarded port, so peers cannot reach you; use an exit started with --forward-ports."
	}
	if q := r.QBittorrent; q != nil {
		switch {
		case q.Error != "":
			return "Cannot read qBittorrent's settings (" + q.Error + "): check --qbittorrent and that its WebUI is on."
		case len(q.Findings) > 0:
			return fmt.Sprintf("qBittorrent is misconfigured (%s): run 'swarmvpn doctor --qbittorrent %s --fix'.", q.Findings[0], q.URL)
		}
	}
	if rc := r.Reachability; rc != nil && rc.Error == "" && !rc.Reachable && rc.Port == r.ForwardedPort {
		return fmt.Sprintf("Not connectable: the exit's last check reached nothing on port %d (tcp %s, udp %s): "+
			"is the torrent client running, and listening on port %d?", rc.Port, rc.TCP, rc.UDP, rc.Port)
	}
	return ""
}
