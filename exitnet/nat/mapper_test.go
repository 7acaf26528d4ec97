package nat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeGateway is a router in memory.
type fakeGateway struct {
	mu       sync.Mutex
	upnp     bool          // keyed by external port
	down     bool          // does not answer
	refuse   error         // answers every mapping with this refusal
	grant    time.Duration // lease granted; 0: what was asked
	ext      netip.Addr
	maps     map[string]uint16 // "tcp/7000" -> external port
	taken    map[uint16]bool   // external ports someone else holds
	adds     int
	removes  int
	discover int
	foreign  map[string]bool // "udp/40000": an external port now forwarded to another host
	ops      []string        // "add tcp/7000", "remove tcp/7000", in order
	listed   []recorded      // when set, what list returns (with listErr) instead of maps
	listErr  error
}

func newFake() *fakeGateway {
	return &fakeGateway{ext: netip.MustParseAddr("11.7.0.1"), maps: map[string]uint16{}, taken: map[uint16]bool{}}
}

var errDown = errors.New("connection refused")

func (f *fakeGateway) method() string {
	if f.upnp {
		return MethodUPnP
	}
	return MethodNATPMP
}
func (f *fakeGateway) address() netip.Addr   { return netip.MustParseAddr("192.168.77.1") }
func (f *fakeGateway) localAddr() netip.Addr { return netip.MustParseAddr("192.168.77.2") }

func (f *fakeGateway) holds(_ context.Context, r recorded) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return false, errDown
	}
	if f.foreign[fmt.Sprintf("%s/%d", r.Proto, r.External)] {
		return false, nil
	}
	ext, ok := f.maps[fmt.Sprintf("%s/%d", r.Proto, r.Internal)]
	return ok && (!f.upnp || ext == r.External), nil
}

// list is the UPnP router's list: every mapping, made with our
// description.
func (f *fakeGateway) list(context.Context, time.Duration) ([]recorded, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errDown
	}
	if !f.upnp {
		return nil, nil
	}
	if f.listed != nil {
		return slices.Clone(f.listed), f.listErr
	}
	var out []recorded
	for k, ext := range f.maps {
		var r recorded
		fmt.Sscanf(k, "%3s/%d", &r.Proto, &r.Internal)
		r.Method, r.Gateway, r.Client, r.External = MethodUPnP, f.address(), f.localAddr(), ext
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeGateway) externalAddr(context.Context) (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return netip.Addr{}, errDown
	}
	return f.ext, nil
}

func (f *fakeGateway) add(_ context.Context, proto string, internal, want uint16, lifetime time.Duration) (uint16, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return 0, 0, errDown
	}
	if f.refuse != nil {
		return 0, 0, &refusedError{f.refuse}
	}
	f.adds++
	k := fmt.Sprintf("%s/%d", proto, internal)
	f.ops = append(f.ops, "add "+k)
	ext := want
	if cur, ok := f.maps[k]; ok {
		ext = cur
	}
	for f.taken[ext] {
		ext++
	}
	f.maps[k] = ext
	if f.grant != 0 {
		lifetime = f.grant
	}
	return ext, lifetime, nil
}

func (f *fakeGateway) remove(_ context.Context, proto string, internal, external uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errDown
	}
	f.removes++
	k := fmt.Sprintf("%s/%d", proto, internal)
	f.ops = append(f.ops, "remove "+k)
	if f.upnp && f.maps[k] != external {
		return &refusedError{errors.New("NoSuchEntryInArray")} // UPnP deletes by external port
	}
	delete(f.maps, k)
	return nil
}

// reboot forgets every mapping.
func (f *fakeGateway) reboot() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.maps)
}

func (f *fakeGateway) set(fn func(f *fakeGateway)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeGateway) snapshot() (maps map[string]uint16, adds, removes, discover int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	maps = map[string]uint16{}
	for k, v := range f.maps {
		maps[k] = v
	}
	return maps, f.adds, f.removes, f.discover
}

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// startFake runs a Mapper against f until the test ends; it must be called
// inside a synctest bubble.
func startFake(t *testing.T, f *fakeGateway, cfg Config) *Mapper {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = discardLog
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.discover = func(context.Context) (gateway, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.discover++
		if f.down {
			return nil, errDown
		}
		return f, nil
	}
	m.dial = func(context.Context, string, netip.Addr, netip.Addr) (gateway, error) { return f, nil }
	m.inUse = func(string, netip.Addr, uint16) bool { return false } // the fake's host is not this one
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	t.Cleanup(func() {
		m.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return m
}

func TestMapperRenewsAtHalfLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		m := startFake(t, f, Config{Lifetime: time.Minute})
		ext, err := m.Add(t.Context(), "tcp", 7000)
		if err != nil || ext != 7000 {
			t.Fatalf("Add = %d, %v; want 7000", ext, err)
		}
		if a, err := m.ExternalAddr(); err != nil || a != f.ext {
			t.Fatalf("ExternalAddr = %v, %v", a, err)
		}
		_, adds0, _, _ := f.snapshot()
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if _, adds, _, _ := f.snapshot(); adds != adds0 {
			t.Fatalf("renewed before half the lease: %d adds", adds-adds0)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if _, adds, _, _ := f.snapshot(); adds != adds0+1 {
			t.Fatalf("%d renewals after 31 s of a 1 min lease, want 1", adds-adds0)
		}
		st := m.Status()
		if len(st.Mappings) != 1 || !st.Mappings[0].Active || st.Mappings[0].External != 7000 ||
			time.Until(st.Mappings[0].Expires) != 59*time.Second {
			t.Fatalf("status %+v", st)
		}
	})
}

func TestMapperShortGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.grant = 10 * time.Second // a gateway granting less than asked
		m := startFake(t, f, Config{Lifetime: time.Hour})
		if _, err := m.Add(t.Context(), "udp", 7001); err != nil {
			t.Fatal(err)
		}
		_, adds0, _, _ := f.snapshot()
		time.Sleep(51 * time.Second)
		synctest.Wait()
		if _, adds, _, _ := f.snapshot(); adds-adds0 != 10 {
			t.Fatalf("%d renewals in 51 s of 10 s leases, want 10", adds-adds0)
		}
	})
}

func TestMapperRecreatesAfterReboot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.upnp = true
		m := startFake(t, f, Config{Lifetime: time.Minute})
		for _, p := range []string{"tcp", "udp"} {
			if _, err := m.Add(t.Context(), p, 7000); err != nil {
				t.Fatal(err)
			}
		}
		// The router reboots, and someone else takes tcp 7000 meanwhile.
		f.reboot()
		f.set(func(f *fakeGateway) { f.taken[7000] = true })
		<-m.Changes() // drain
		time.Sleep(31 * time.Second)
		synctest.Wait()
		maps, _, _, _ := f.snapshot()
		if maps["tcp/7000"] != 7001 || maps["udp/7000"] != 7001 {
			t.Fatalf("after reboot: %v", maps)
		}
		select {
		case <-m.Changes():
		default:
			t.Fatal("no change signalled for a new external port")
		}
		st := m.Status()
		for _, mp := range st.Mappings {
			if mp.External != 7001 || !mp.Active {
				t.Fatalf("status after reboot: %+v", mp)
			}
		}
	})
}

func TestMapperGatewayVanishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		m := startFake(t, f, Config{Lifetime: 20 * time.Second, RetryMin: time.Second, RetryMax: 8 * time.Second})
		if _, err := m.Add(t.Context(), "tcp", 7000); err != nil {
			t.Fatal(err)
		}
		f.set(func(f *fakeGateway) { f.down = true })
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		_, _, _, disc := f.snapshot()
		// Back-off 1, 2, 4, 8, 8, ... s: about 40 attempts in 5 minutes, not thousands.
		if disc < 10 || disc > 50 {
			t.Fatalf("%d discoveries in 5 min with back-off up to 8 s", disc)
		}
		st := m.Status()
		if st.Method != "" || st.Err == "" || len(st.Mappings) != 1 || st.Mappings[0].Active {
			t.Fatalf("status while the gateway is gone: %+v", st)
		}
		if _, err := m.ExternalAddr(); !errors.Is(err, ErrNoGateway) {
			t.Fatalf("ExternalAddr while gone: %v", err)
		}
		// It comes back, having lost everything.
		f.reboot()
		f.set(func(f *fakeGateway) { f.down = false })
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if maps, _, _, _ := f.snapshot(); maps["tcp/7000"] != 7000 {
			t.Fatalf("not re-created: %v", maps)
		}
		if st := m.Status(); !st.Mappings[0].Active || st.Method != MethodNATPMP {
			t.Fatalf("status after return: %+v", st)
		}
	})
}

func TestMapperCloseDeletesAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		m := startFake(t, f, Config{})
		for port := uint16(7000); port < 7005; port++ {
			if _, err := m.Add(t.Context(), "udp", port); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Remove(t.Context(), "udp", 7000); err != nil {
			t.Fatal(err)
		}
		if maps, _, _, _ := f.snapshot(); len(maps) != 4 {
			t.Fatalf("after Remove: %v", maps)
		}
		m.Close()
		m.Close()
		if maps, _, removes, _ := f.snapshot(); len(maps) != 0 || removes != 5 {
			t.Fatalf("after Close: %v, %d removes", maps, removes)
		}
		if _, err := m.Add(t.Context(), "tcp", 1); !errors.Is(err, ErrClosed) {
			t.Fatalf("Add after Close: %v", err)
		}
	})
}

func TestMapperRemoveWhileGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.upnp = true
		m := startFake(t, f, Config{Lifetime: time.Minute, RetryMax: 4 * time.Second})
		if _, err := m.Add(t.Context(), "tcp", 7000); err != nil {
			t.Fatal(err)
		}
		f.set(func(f *fakeGateway) { f.down = true })
		if err := m.Remove(t.Context(), "tcp", 7000); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		f.set(func(f *fakeGateway) { f.down = false })
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if maps, _, _, _ := f.snapshot(); len(maps) != 0 {
			t.Fatalf("a removed mapping left on the router: %v", maps)
		}
	})
}

func TestMapperRefusedIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.refuse = errors.New("ConflictInMappingEntry")
		m := startFake(t, f, Config{RetryMin: time.Second, RetryMax: 4 * time.Second})
		if _, err := m.Add(t.Context(), "tcp", 7000); err == nil {
			t.Fatal("Add succeeded against a refusing router")
		}
		if st := m.Status(); st.Method == "" || st.Mappings[0].Err == "" {
			t.Fatalf("a refusal must keep the gateway and show the error: %+v", st)
		}
		f.set(func(f *fakeGateway) { f.refuse = nil })
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if st := m.Status(); !st.Mappings[0].Active || st.Mappings[0].Err != "" {
			t.Fatalf("not mapped after the refusals stopped: %+v", st)
		}
		if _, _, _, disc := f.snapshot(); disc != 1 {
			t.Fatalf("a refusing gateway was looked for again (%d discoveries)", disc)
		}
	})
}

func TestMapperDoubleNAT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.ext = netip.MustParseAddr("100.64.3.4")
		m := startFake(t, f, Config{})
		if _, err := m.Add(t.Context(), "tcp", 7000); err != nil {
			t.Fatal(err)
		}
		a, err := m.ExternalAddr()
		if !errors.Is(err, ErrDoubleNAT) || a.IsValid() {
			t.Fatalf("ExternalAddr = %v, %v; want ErrDoubleNAT and no address", a, err)
		}
		st := m.Status()
		if !st.DoubleNAT || st.External.IsValid() || st.Reported != f.ext || st.Err == "" {
			t.Fatalf("status %+v", st)
		}
	})
}

func TestModeOff(t *testing.T) {
	m, err := New(Config{Mode: "off"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	if _, err := m.Add(t.Context(), "tcp", 7000); !errors.Is(err, ErrOff) {
		t.Fatalf("Add with mode off: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAddChecksArguments(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		proto string
		port  uint16
	}{{"sctp", 7000}, {"", 7000}, {"tcp", 0}} {
		if _, err := m.Add(t.Context(), tc.proto, tc.port); err == nil {
			t.Errorf("Add(%q, %d) accepted", tc.proto, tc.port)
		}
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"modes", Config{Mode: "UPnP"}, true},
		{"natpmp", Config{Mode: "natpmp", Lifetime: 60 * time.Second}, true},
		{"bad mode", Config{Mode: "pcp"}, false},
		{"gateway", Config{Gateway: netip.MustParseAddr("192.168.1.1")}, true},
		{"mapped gateway", Config{Gateway: netip.MustParseAddr("::ffff:192.168.1.1")}, true},
		{"v6 gateway", Config{Gateway: netip.MustParseAddr("fe80::1")}, false},
		{"loopback gateway", Config{Gateway: netip.MustParseAddr("127.0.0.1")}, false},
		{"multicast gateway", Config{Gateway: netip.MustParseAddr("239.255.255.250")}, false},
		{"short lifetime", Config{Lifetime: time.Second}, false},
		{"long lifetime", Config{Lifetime: 8 * 24 * time.Hour}, false},
		{"negative timeout", Config{Timeout: -1}, false},
		{"retry order", Config{RetryMin: time.Minute, RetryMax: time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestMapperRemoveOutlivesItsContext: a Remove whose context has already
// ended is still carried out, in order before a later Add of the same port,
// so a mapping never outlives the lease that wanted it.
func TestMapperRemoveOutlivesItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		m := startFake(t, f, Config{Lifetime: time.Minute})
		for _, port := range []uint16{7000, 7001} {
			if _, err := m.Add(t.Context(), "tcp", port); err != nil {
				t.Fatal(err)
			}
		}
		gone, cancel := context.WithCancel(t.Context())
		cancel()
		m.Remove(gone, "tcp", 7000) // may return ctx's error: it is applied all the same
		m.Remove(gone, "tcp", 7001)
		if _, err := m.Add(t.Context(), "tcp", 7001); err != nil { // a new lease of 7001
			t.Fatal(err)
		}
		synctest.Wait()
		if st := m.Status(); len(st.Mappings) != 1 || st.Mappings[0].Internal != 7001 {
			t.Fatalf("mappings wanted after removing 7000 and re-adding 7001: %+v", st.Mappings)
		}
		time.Sleep(5 * time.Minute) // renewals come and go
		synctest.Wait()
		if maps, _, _, _ := f.snapshot(); len(maps) != 1 {
			t.Fatalf("on the router after the removal and five minutes of renewals: %v", maps)
		}
	})
}
