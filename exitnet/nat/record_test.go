package nat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarmvpn/swarmvpn/internal/syncbuf"
)

func TestParseRecord(t *testing.T) {
	good := recorded{Method: MethodUPnP, Gateway: netip.MustParseAddr("192.168.77.1"),
		Client: netip.MustParseAddr("192.168.77.2"), Proto: "tcp", Internal: 7843, External: 7843}
	const one = `{"method":"upnp","gateway":"192.168.77.1","client":"192.168.77.2","proto":"tcp","internal":7843,"external":7843}`
	const ok = `{"version":1,"mappings":[` + one + `]}`
	mapping := func(field, value string) string {
		m := map[string]string{"method": `"upnp"`, "gateway": `"192.168.77.1"`, "client": `"192.168.77.2"`,
			"proto": `"tcp"`, "internal": "7843", "external": "7843"}
		m[field] = value
		var parts []string
		for _, k := range []string{"method", "gateway", "client", "proto", "internal", "external"} {
			parts = append(parts, `"`+k+`":`+m[k])
		}
		return `{"version":1,"mappings":[{` + strings.Join(parts, ",") + `}]}`
	}
	for _, tc := range []struct {
		name, in string
		want     []recorded
		err      string
	}{
		{"one", ok, []recorded{good}, ""},
		{"duplicate", `{"version":1,"mappings":[` + one + "," + one + `]}`, []recorded{good}, ""},
		{"empty list", `{"version":1,"mappings":[]}`, nil, ""},
		{"unknown fields ignored", `{"version":1,"x":[1,2],"mappings":[]}`, nil, ""},
		{"no version", `{"mappings":[]}`, nil, "version 0"},
		{"future version", `{"version":2,"mappings":[]}`, nil, "version 2"},
		{"not json", `version=1`, nil, "parse"},
		{"truncated", ok[:40], nil, "parse"},
		{"null", `null`, nil, "version 0"},
		{"method", mapping("method", `"pcp"`), nil, "method"},
		{"gateway ipv6", mapping("gateway", `"fe80::1"`), nil, "gateway"},
		{"gateway broadcast", mapping("gateway", `"255.255.255.255"`), nil, "gateway"},
		{"gateway missing", mapping("gateway", `""`), nil, "gateway"},
		{"gateway garbage", mapping("gateway", `"router"`), nil, "parse"},
		{"client loopback", mapping("client", `"127.0.0.1"`), nil, "client"},
		{"client mapped", mapping("client", `"::ffff:192.168.77.2"`), nil, "client"},
		{"proto", mapping("proto", `"TCP "`), nil, "protocol"},
		{"internal 0", mapping("internal", "0"), nil, "port 0"},
		{"external 0", mapping("external", "0"), nil, "port 0"},
		{"port too big", mapping("external", "65536"), nil, "parse"},
		{"port negative", mapping("internal", "-1"), nil, "parse"},
		{"too large", `{"version":1,"mappings":[]}` + strings.Repeat(" ", maxRecordFile), nil, "too large"},
		{"too many", `{"version":1,"mappings":[` + strings.Repeat(one+",", maxRecorded) + one + `]}`, nil, "mappings, at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRecord([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestRecordRoundTrip(t *testing.T) {
	rs := []recorded{
		{Method: MethodNATPMP, Gateway: netip.MustParseAddr("192.168.1.1"), Client: netip.MustParseAddr("192.168.1.5"), Proto: "udp", Internal: 40000, External: 41000},
		{Method: MethodUPnP, Gateway: netip.MustParseAddr("192.168.1.1"), Client: netip.MustParseAddr("192.168.1.5"), Proto: "tcp", Internal: 7843, External: 7843},
	}
	b := marshalRecord(append(rs, rs[0]))
	got, err := parseRecord(b)
	if err != nil || len(got) != 2 || !slices.Contains(got, rs[0]) || !slices.Contains(got, rs[1]) {
		t.Fatalf("round trip of\n%s: %v, %v", b, got, err)
	}
	if !bytes.Equal(marshalRecord(got), b) {
		t.Fatal("marshalRecord is not stable")
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"version":1,"mappings":[{"method":"upnp","gateway":"192.168.77.1","client":"192.168.77.2","proto":"tcp","internal":7843,"external":7843}]}`))
	f.Add([]byte(`{"version":1,"mappings":[{"method":"natpmp","gateway":"10.0.0.1","client":"10.0.0.9","proto":"udp","internal":1,"external":65535}]}`))
	f.Add([]byte(`{"version":1,"mappings":null}`))
	f.Add([]byte(`{"version":1,"mappings":[{}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := parseRecord(b)
		if err != nil {
			return
		}
		if len(rs) > maxRecorded {
			t.Fatalf("%d mappings", len(rs))
		}
		for _, r := range rs {
			if err := r.check(); err != nil {
				t.Fatalf("accepted %v: %v", r, err)
			}
		}
		again, err := parseRecord(marshalRecord(rs))
		if err != nil || len(again) != len(rs) {
			t.Fatalf("re-parse of %v: %v, %v", rs, again, err)
		}
	})
}

// TestMapperRecordSurvivesCrash: each mapping is in the record file before
// the router makes it; a run that ends without deleting it (here: the file
// and the router as a killed run leaves them) has it deleted by the next
// run, before that one maps anything, except a mapping that the router
// now forwards to another host.
func TestMapperRecordSurvivesCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nat.json")
		f := newFake()
		f.upnp = true
		m := startFake(t, f, Config{RecordPath: path})
		for _, p := range []struct {
			proto    string
			internal uint16
		}{{"tcp", 7843}, {"tcp", 40000}, {"udp", 40000}} {
			if _, err := m.Add(t.Context(), p.proto, p.internal); err != nil {
				t.Fatal(err)
			}
		}
		crashed, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := parseRecord(crashed)
		if err != nil || len(rs) != 3 {
			t.Fatalf("record while mapped: %v, %v\n%s", rs, err, crashed)
		}
		left, _, _, _ := f.snapshot()

		// A clean stop deletes every mapping and clears the record.
		m.Close()
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("record after a clean stop: %v", err)
		}

		// As a killed run leaves things: the router holds the mappings
		// and the record lists them. The router has since given the
		// external port of udp 40000 to another host.
		f.set(func(f *fakeGateway) {
			maps.Copy(f.maps, left)
			f.foreign = map[string]bool{"udp/40000": true}
			delete(f.maps, "udp/40000")
			f.ops = nil
		})
		if err := os.WriteFile(path, crashed, 0o600); err != nil {
			t.Fatal(err)
		}
		var logs syncbuf.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		m2 := startFake(t, f, Config{RecordPath: path, Log: log})
		if _, err := m2.Add(t.Context(), "tcp", 7844); err != nil {
			t.Fatal(err)
		}
		now, _, _, _ := f.snapshot()
		if len(now) != 1 || now["tcp/7844"] == 0 {
			t.Fatalf("router after the restart: %v", now)
		}
		f.mu.Lock()
		ops := slices.Clone(f.ops)
		f.mu.Unlock()
		if len(ops) == 3 {
			slices.Sort(ops[:2]) // the deletions, in any order, before the mapping
		}
		if want := []string{"remove tcp/40000", "remove tcp/7843", "add tcp/7844"}; !slices.Equal(ops, want) {
			t.Fatalf("router saw %q, want %q", ops, want)
		}
		for _, want := range []string{"deleting them before mapping anything", "deleted a mapping an earlier run left",
			"no longer forwards to this host; left alone"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("no %q in the log:\n%s", want, logs.String())
			}
		}
		b, _ := os.ReadFile(path)
		if rs, err := parseRecord(b); err != nil || len(rs) != 1 || rs[0].Internal != 7844 {
			t.Fatalf("record after recovery: %v, %v", rs, err)
		}
		m2.Close()
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("record after a clean stop: %v", err)
		}
	})
}

// TestMapperRecordBeforeAdd: the record names a mapping before the router
// is asked for it.
func TestMapperRecordBeforeAdd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nat.json")
		f := newFake()
		f.upnp = true
		var seen []recorded
		m, err := New(Config{RecordPath: path, Log: discardLog})
		if err != nil {
			t.Fatal(err)
		}
		m.discover = func(context.Context) (gateway, error) { return recordSpy{f, path, &seen}, nil }
		done := make(chan error, 1)
		go func() { done <- m.Run(context.Background()) }()
		defer func() { m.Close(); <-done }()
		if _, err := m.Add(t.Context(), "udp", 40001); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 1 || seen[0].Proto != "udp" || seen[0].Internal != 40001 || seen[0].External != 40001 {
			t.Fatalf("record when the router was asked: %v", seen)
		}
	})
}

// recordSpy reads the record file each time the gateway is asked to map.
type recordSpy struct {
	gateway
	path string
	seen *[]recorded
}

func (s recordSpy) add(ctx context.Context, proto string, internal, want uint16, lifetime time.Duration) (uint16, time.Duration, error) {
	b, _ := os.ReadFile(s.path)
	rs, _ := parseRecord(b)
	*s.seen = rs
	return s.gateway.add(ctx, proto, internal, want, lifetime)
}

// TestMapperBadRecord: a record file that does not parse is reported and
// ignored, and replaced by the next write.
func TestMapperBadRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nat.json")
		if err := os.WriteFile(path, []byte(`{"version":1,"mappings":[{"method":"upnp"`), 0o600); err != nil {
			t.Fatal(err)
		}
		f := newFake()
		var logs syncbuf.Buffer
		m := startFake(t, f, Config{RecordPath: path, Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if _, err := m.Add(t.Context(), "tcp", 7000); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "ignoring the record") {
			t.Fatalf("log:\n%s", logs.String())
		}
		b, _ := os.ReadFile(path)
		if rs, err := parseRecord(b); err != nil || len(rs) != 1 {
			t.Fatalf("record: %v, %v", rs, err)
		}
		if _, _, removes, _ := f.snapshot(); removes != 0 {
			t.Fatalf("%d removes", removes)
		}
	})
}

// holdsFails is a gateway whose holds fails while fails is above 0.
type holdsFails struct {
	*fakeGateway
	fails *atomic.Int32
}

func (h holdsFails) holds(ctx context.Context, r recorded) (bool, error) {
	if h.fails.Add(-1) >= 0 {
		return false, errDown
	}
	return h.fakeGateway.holds(ctx, r)
}

// TestMapperLeftoverNeverDeletesLive: a mapping an earlier run left that
// could not be deleted at once stays in the record; once this run maps the
// same port (the exit's link port, the same lent port), it is this run's
// live mapping, and finding the gateway again must not delete it.
func TestMapperLeftoverNeverDeletesLive(t *testing.T) {
	for _, upnp := range []bool{false, true} {
		t.Run(map[bool]string{false: "natpmp", true: "upnp"}[upnp], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "nat.json")
				f := newFake()
				f.upnp = upnp
				left := recorded{Method: f.method(), Gateway: f.address(), Client: f.localAddr(), Proto: "tcp",
					Internal: 40000, External: 40000}
				if err := os.WriteFile(path, marshalRecord([]recorded{left}), 0o600); err != nil {
					t.Fatal(err)
				}
				fails := new(atomic.Int32)
				fails.Store(1)
				m, err := New(Config{RecordPath: path, Log: discardLog, Lifetime: 20 * time.Second,
					RetryMin: time.Second, RetryMax: 2 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				m.discover = func(context.Context) (gateway, error) {
					f.mu.Lock()
					defer f.mu.Unlock()
					if f.down {
						return nil, errDown
					}
					return holdsFails{f, fails}, nil
				}
				m.inUse = func(string, netip.Addr, uint16) bool { return false }
				done := make(chan error, 1)
				go func() { done <- m.Run(context.Background()) }()
				defer func() { m.Close(); <-done }()
				if _, err := m.Add(t.Context(), "tcp", 40000); err != nil {
					t.Fatal(err)
				}
				// The gateway stops answering, and is found again.
				f.set(func(f *fakeGateway) { f.down = true })
				time.Sleep(15 * time.Second)
				synctest.Wait()
				f.set(func(f *fakeGateway) { f.down = false; f.ops = nil })
				time.Sleep(10 * time.Second)
				synctest.Wait()
				f.mu.Lock()
				ops := slices.Clone(f.ops)
				f.mu.Unlock()
				if slices.Contains(ops, "remove tcp/40000") {
					t.Fatalf("the live mapping was deleted as an earlier run's: router saw %q", ops)
				}
				if maps, _, _, _ := f.snapshot(); maps["tcp/40000"] != 40000 {
					t.Fatalf("router: %v", maps)
				}
			})
		})
	}
}

// TestRecordFullReadBack: a record as full as saveRecord writes it, with
// the longest fields, is read back whole: a record too large to read
// would leave every mapping it lists on the router after a crash.
func TestRecordFullReadBack(t *testing.T) {
	var rs []recorded
	for i := range maxRecorded {
		rs = append(rs, recorded{Method: MethodNATPMP, Gateway: netip.MustParseAddr("192.168.100.254"),
			Client: netip.MustParseAddr("192.168.100.253"), Proto: "tcp", Internal: uint16(60000 + i%5000), External: uint16(65535 - i)})
	}
	path := filepath.Join(t.TempDir(), "nat.json")
	if err := os.WriteFile(path, marshalRecord(rs), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readRecord(path)
	if err != nil || len(got) != maxRecorded {
		t.Fatalf("read back %d of %d mappings: %v", len(got), maxRecorded, err)
	}
}

// TestMapperLeftoverPortInUse: a mapping an earlier run left whose port a
// program of this host uses now, by either protocol, is not deleted (it
// may be that program's: NAT-PMP deletes by internal port, and an exit
// holds a lent port's UDP side only while a client uses it), and stays in
// the record; the others are deleted.
func TestMapperLeftoverPortInUse(t *testing.T) {
	for _, held := range []string{"udp", "tcp"} {
		t.Run(held, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "nat.json")
				f := newFake()
				f.maps["udp/40000"], f.maps["udp/40001"] = 40000, 40001
				rec := func(internal uint16) recorded {
					return recorded{Method: f.method(), Gateway: f.address(), Client: f.localAddr(), Proto: "udp",
						Internal: internal, External: internal}
				}
				if err := os.WriteFile(path, marshalRecord([]recorded{rec(40000), rec(40001)}), 0o600); err != nil {
					t.Fatal(err)
				}
				m, err := New(Config{RecordPath: path, Log: discardLog})
				if err != nil {
					t.Fatal(err)
				}
				m.discover = func(context.Context) (gateway, error) { return f, nil }
				m.inUse = func(proto string, local netip.Addr, port uint16) bool {
					return proto == held && local == f.localAddr() && port == 40000
				}
				done := make(chan error, 1)
				go func() { done <- m.Run(context.Background()) }()
				defer func() { m.Close(); <-done }()
				if _, err := m.Add(t.Context(), "tcp", 7000); err != nil {
					t.Fatal(err)
				}
				if maps, _, _, _ := f.snapshot(); maps["udp/40000"] != 40000 || maps["udp/40001"] != 0 {
					t.Fatalf("router after recovery: %v", maps)
				}
				b, _ := os.ReadFile(path)
				if rs, err := parseRecord(b); err != nil || !slices.Contains(rs, rec(40000)) || slices.Contains(rs, rec(40001)) {
					t.Fatalf("record after recovery: %v, %v", rs, err)
				}
			})
		})
	}
}

// TestPortInUse: a port a socket of this host holds is in use; once it is
// closed, it is not.
func TestPortInUse(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	tcp := uint16(ln.Addr().(*net.TCPAddr).Port)
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	udp := uint16(uc.LocalAddr().(*net.UDPAddr).Port)
	if !portInUse("tcp", lo, tcp) || !portInUse("udp", lo, udp) {
		t.Fatal("a port held by a listener (on every address) or a socket (on loopback) is not in use")
	}
	ln.Close()
	uc.Close()
	if portInUse("tcp", lo, tcp) || portInUse("udp", lo, udp) {
		t.Fatal("a closed port is in use")
	}
	if !portInUse("sctp", lo, tcp) {
		t.Fatal("an unknown protocol counts as free")
	}
}

// TestMapperLeftoverRouterDown: when the router does not answer about a
// mapping an earlier run left, the other leftovers by the same method are
// kept for later without asking: many leftovers must not hold back this
// run's mappings by one Timeout each.
func TestMapperLeftoverRouterDown(t *testing.T) {
	for _, via := range []string{"dial", "holds"} {
		t.Run(via, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "nat.json")
				f := newFake() // NAT-PMP
				method := MethodNATPMP
				if via == "dial" {
					method = MethodUPnP // made by another method than found now
				}
				var rs []recorded
				for i := range 50 {
					rs = append(rs, recorded{Method: method, Gateway: f.address(), Client: f.localAddr(), Proto: "udp",
						Internal: uint16(40000 + i), External: uint16(40000 + i)})
				}
				if err := os.WriteFile(path, marshalRecord(rs), 0o600); err != nil {
					t.Fatal(err)
				}
				m, err := New(Config{RecordPath: path, Log: discardLog, Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				var asked atomic.Int32
				m.discover = func(context.Context) (gateway, error) {
					if via == "holds" {
						return holdsStalls{f, &asked}, nil
					}
					return f, nil
				}
				m.dial = func(ctx context.Context, _ string, _, _ netip.Addr) (gateway, error) {
					asked.Add(1)
					<-ctx.Done() // the router does not answer
					return nil, ctx.Err()
				}
				m.inUse = func(string, netip.Addr, uint16) bool { return false }
				done := make(chan error, 1)
				go func() { done <- m.Run(context.Background()) }()
				defer func() { m.Close(); <-done }()
				start := time.Now()
				if _, err := m.Add(context.Background(), "tcp", 7000); err != nil {
					t.Fatal(err)
				}
				if n := asked.Load(); n != 1 {
					t.Errorf("the router was asked %d times about leftovers, want 1", n)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("mapping took %v behind the leftovers", d)
				}
				b, _ := os.ReadFile(path)
				if got, err := parseRecord(b); err != nil || len(got) != len(rs)+1 {
					t.Fatalf("record: %d mappings, %v; want the %d leftovers kept and the new one", len(got), err, len(rs))
				}
			})
		})
	}
}

// holdsStalls is a gateway that does not answer holds.
type holdsStalls struct {
	*fakeGateway
	asked *atomic.Int32
}

func (h holdsStalls) holds(ctx context.Context, r recorded) (bool, error) {
	h.asked.Add(1)
	<-ctx.Done()
	return false, ctx.Err()
}

// TestMapperLeftoverNotDeletedSaysHow: a mapping an earlier run left that
// this run does not delete (this host's address changed; the router
// refused) is reported with what the user can do about it.
func TestMapperLeftoverNotDeletedSaysHow(t *testing.T) {
	for _, why := range []string{"address", "refused"} {
		t.Run(why, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "nat.json")
				f := newFake()
				f.maps["udp/40000"] = 40000
				r := recorded{Method: f.method(), Gateway: f.address(), Client: f.localAddr(), Proto: "udp",
					Internal: 40000, External: 40000}
				if why == "address" {
					r.Client = netip.MustParseAddr("192.168.77.3")
				}
				if err := os.WriteFile(path, marshalRecord([]recorded{r}), 0o600); err != nil {
					t.Fatal(err)
				}
				var logs syncbuf.Buffer
				m, err := New(Config{RecordPath: path, Log: slog.New(slog.NewTextHandler(&logs, nil))})
				if err != nil {
					t.Fatal(err)
				}
				m.discover = func(context.Context) (gateway, error) { return removeRefuses{f}, nil }
				m.inUse = func(string, netip.Addr, uint16) bool { return false }
				done := make(chan error, 1)
				go func() { done <- m.Run(context.Background()) }()
				defer func() { m.Close(); <-done }()
				if _, err := m.Add(t.Context(), "tcp", 7000); err != nil {
					t.Fatal(err)
				}
				if want := "delete it in the router's port forwarding settings"; !strings.Contains(logs.String(), want) {
					t.Fatalf("no %q in the log:\n%s", want, logs.String())
				}
			})
		})
	}
}

// removeRefuses is a gateway that refuses to delete a mapping.
type removeRefuses struct{ *fakeGateway }

func (removeRefuses) remove(context.Context, string, uint16, uint16) error {
	return &refusedError{errors.New("NotAuthorized")}
}

// addTimesOut is a gateway whose next adds (while lose is above 0) get no
// answer in time; the router makes the mapping all the same when made is
// set.
type addTimesOut struct {
	*fakeGateway
	lose *atomic.Int32
	made bool
}

func (a addTimesOut) add(ctx context.Context, proto string, internal, want uint16, lifetime time.Duration) (uint16, time.Duration, error) {
	if a.lose.Add(-1) >= 0 {
		if a.made {
			a.fakeGateway.add(ctx, proto, internal, want, lifetime)
		}
		return 0, 0, context.DeadlineExceeded
	}
	return a.fakeGateway.add(ctx, proto, internal, want, lifetime)
}

// TestMapperRecordKeepsTimedOutAdd: a mapping whose add got no answer may
// have been made by the router: it stays in the record (for the next run
// to delete, were this one to crash) until the router deletes it, or says
// it holds no such mapping.
func TestMapperRecordKeepsTimedOutAdd(t *testing.T) {
	for _, made := range []bool{true, false} {
		t.Run(fmt.Sprint("made=", made), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "nat.json")
				f := newFake()
				f.upnp = true
				lose := new(atomic.Int32)
				lose.Store(1)
				m, err := New(Config{RecordPath: path, Log: discardLog})
				if err != nil {
					t.Fatal(err)
				}
				m.discover = func(context.Context) (gateway, error) { return addTimesOut{f, lose, made}, nil }
				m.inUse = func(string, netip.Addr, uint16) bool { return false }
				done := make(chan error, 1)
				go func() { done <- m.Run(context.Background()) }()
				defer func() { m.Close(); <-done }()
				if _, err := m.Add(t.Context(), "udp", 40000); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Add: %v, want the timeout", err)
				}
				// A crash now must leave the mapping in the record.
				b, _ := os.ReadFile(path)
				if rs, err := parseRecord(b); err != nil || len(rs) != 1 || rs[0].Proto != "udp" || rs[0].External != 40000 {
					t.Fatalf("record after the timed-out add: %v, %v\n%s", rs, err, b)
				}
				if err := m.Remove(t.Context(), "udp", 40000); err != nil {
					t.Fatal(err)
				}
				b, _ = os.ReadFile(path)
				if rs, err := parseRecord(b); err != nil || len(rs) != 1 {
					t.Fatalf("record after Remove, before the router answers again: %v, %v\n%s", rs, err, b)
				}
				// The gateway is found again: what it holds is deleted, and
				// the record emptied either way.
				time.Sleep(5 * time.Second)
				synctest.Wait()
				if _, err := os.Stat(path); !os.IsNotExist(err) {
					b, _ := os.ReadFile(path)
					t.Fatalf("record once the router answered: %v\n%s", err, b)
				}
				maps, _, _, _ := f.snapshot()
				f.mu.Lock()
				ops := slices.Clone(f.ops)
				f.mu.Unlock()
				if _, ok := maps["udp/40000"]; ok || slices.Contains(ops, "remove udp/40000") != made {
					t.Fatalf("router holds %v after %q", maps, ops)
				}
			})
		})
	}
}

// TestMapperLeftoverPlacedByRouter: an IGDv2 router asked for an external
// port someone holds places the mapping at another (AddAnyPortMapping); a
// run that ended before it wrote that port down left in the record the
// port it asked for. The next run finds the placed mapping in the router's
// list and deletes it, and leaves alone a mapping of another internal port
// at the port asked for.
func TestMapperLeftoverPlacedByRouter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nat.json")
		f := newFake()
		f.upnp = true
		f.maps["tcp/40000"] = 40123 // placed by the router
		f.maps["tcp/40001"] = 40000 // what held the port asked for
		left := recorded{Method: f.method(), Gateway: f.address(), Client: f.localAddr(), Proto: "tcp",
			Internal: 40000, External: 40000}
		if err := os.WriteFile(path, marshalRecord([]recorded{left}), 0o600); err != nil {
			t.Fatal(err)
		}
		var logs syncbuf.Buffer
		m := startFake(t, f, Config{RecordPath: path, Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if _, err := m.Add(t.Context(), "tcp", 7843); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		ops := slices.Clone(f.ops)
		f.mu.Unlock()
		if want := []string{"remove tcp/40000", "add tcp/7843"}; !slices.Equal(ops, want) {
			t.Fatalf("router saw %q, want %q", ops, want)
		}
		if now, _, _, _ := f.snapshot(); len(now) != 2 || now["tcp/40001"] != 40000 || now["tcp/7843"] != 7843 {
			t.Fatalf("router after recovery: %v", now)
		}
		if want := "at the external port the router chose"; !strings.Contains(logs.String(), want) {
			t.Errorf("no %q in the log:\n%s", want, logs.String())
		}
		b, _ := os.ReadFile(path)
		if rs, err := parseRecord(b); err != nil || len(rs) != 1 || rs[0].Internal != 7843 {
			t.Fatalf("record after recovery: %v, %v", rs, err)
		}
	})
}

// TestMapperPlacedBounded: the router's list comes from the network. A
// list read in part is used for what it shows; a list naming more
// mappings of one port than a run leaves is believed for maxPlaced of
// them, the rest left to their lease.
func TestMapperPlacedBounded(t *testing.T) {
	for _, many := range []bool{false, true} {
		t.Run(fmt.Sprint("many=", many), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "nat.json")
				f := newFake()
				f.upnp = true
				rec := func(ext uint16) recorded {
					return recorded{Method: f.method(), Gateway: f.address(), Client: f.localAddr(), Proto: "tcp",
						Internal: 40000, External: ext}
				}
				f.listed = []recorded{rec(40123)}
				f.listErr = fmt.Errorf("%w after 1 entries", errListCut)
				if many {
					f.listed = nil
					for i := range 3 * maxPlaced {
						f.listed = append(f.listed, rec(41000+uint16(i)))
					}
					f.listErr = nil
				}
				f.maps["tcp/40000"] = f.listed[len(f.listed)-1].External
				if err := os.WriteFile(path, marshalRecord([]recorded{rec(40000)}), 0o600); err != nil {
					t.Fatal(err)
				}
				var logs syncbuf.Buffer
				m := startFake(t, f, Config{RecordPath: path, Log: slog.New(slog.NewTextHandler(&logs, nil))})
				if _, err := m.Add(t.Context(), "udp", 7843); err != nil {
					t.Fatal(err)
				}
				now, _, removes, _ := f.snapshot()
				_, held := now["tcp/40000"]
				want, warn := 1, "too long or too slow to read whole"
				if many {
					want, warn = maxPlaced, "more mappings of one port than an earlier run could leave"
				}
				if removes != want || held != many {
					t.Fatalf("%d deletions, router holds %v; want %d", removes, now, want)
				}
				if !strings.Contains(logs.String(), warn) {
					t.Errorf("no %q in the log:\n%s", warn, logs.String())
				}
			})
		})
	}
}
