package exit

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/syncbuf"
	"github.com/swarmvpn/swarmvpn/internal/wire"
)

// syncBuffer is a log destination that tests read while the exit writes.
type syncBuffer struct{ syncbuf.Buffer }

// records returns the JSON log records written so far.
func (s *syncBuffer) records(t *testing.T) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestRefusalLogRate: the first refusal is reported at once; those within
// the next minute are counted into the next report.
func TestRefusalLogRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf syncBuffer
		log := slog.New(slog.NewJSONHandler(&buf, nil))
		var r refusalLog
		for range 3 {
			r.refused(log)
		}
		time.Sleep(refusalLogEvery / 2)
		r.refused(log)
		if got := buf.records(t); len(got) != 1 || got[0]["count"] != 1.0 {
			t.Fatalf("within the first minute: %v, want one report of 1", got)
		}
		time.Sleep(refusalLogEvery / 2)
		r.refused(log)
		got := buf.records(t)
		if len(got) != 2 || got[1]["count"] != 4.0 || got[1]["level"] != "INFO" {
			t.Fatalf("after a minute: %v, want a second report of 4 at info", got)
		}
	})
}

// TestPolicyRefusalLogged: an exit that refuses a flow says so at info,
// naming the settings that would allow it and not the destination, which
// only the debug record holds.
func TestPolicyRefusalLogged(t *testing.T) {
	var buf syncBuffer
	exit := serveExit(t, Config{Policy: &policy.Policy{},
		Log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	pl := startPool(t, exit.addr)
	tg := startTarget(t, "tcp4", "127.0.0.1:0", nil)
	dst := "127.0.0.1:" + tg.port()
	if _, err := pl.DialContext(t.Context(), "tcp", dst); wire.StatusOf(err) != wire.StatusNotAllowed {
		t.Fatalf("dial %s: %v, want not allowed", dst, err)
	}
	exit.stop(t) // every record is written
	var infos, debugs int
	for _, r := range buf.records(t) {
		line, _ := json.Marshal(r)
		switch {
		case r["msg"] == "flows refused by the exit policy":
			infos++
			if r["level"] != "INFO" || !strings.Contains(r["hint"].(string), "--allow-private") || !strings.Contains(r["hint"].(string), "--rule") {
				t.Errorf("refusal report %s: want info naming --allow-private and --rule", line)
			}
			if strings.Contains(string(line), tg.port()) {
				t.Errorf("refusal report %s names the destination", line)
			}
		case r["level"] == "DEBUG" && r["msg"] == "connect failed" && strings.Contains(string(line), dst):
			debugs++
		case r["level"] != "DEBUG" && strings.Contains(string(line), ":"+tg.port()):
			t.Errorf("record above debug names the destination: %s", line)
		}
	}
	if infos != 1 || debugs != 1 {
		t.Errorf("%d info reports and %d debug records of the refusal, want 1 and 1:\n%v", infos, debugs, buf.records(t))
	}
}
