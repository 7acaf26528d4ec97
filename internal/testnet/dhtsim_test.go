package testnet

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// TestDHTColdStart measures, through client.New and exit.New as they ship,
// the time from a client's start to its first usable exit (a link up and
// verified) on a loopback DHT: cold (no state: bootstrap, lookup, probe,
// link) and warm (the same state dir again: saved routing table and cached
// exits). An experiment, not a test: it runs only with SWARMVPN_DHT_SIM=1.
//
//	SWARMVPN_DHT_SIM=1 go test -run TestDHTColdStart -v -timeout 20m ./internal/testnet/
//
// SIM_NODES (default 200), SIM_EXITS (5) and SIM_TRIALS (20) change its size.
func TestDHTColdStart(t *testing.T) {
	if os.Getenv("SWARMVPN_DHT_SIM") == "" {
		t.Skip("experiment: set SWARMVPN_DHT_SIM=1")
	}
	env := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
			return v
		}
		return def
	}
	nodes, exits, trials := env("SIM_NODES", 200), env("SIM_EXITS", 5), env("SIM_TRIALS", 20)
	d := StartDHT(t, nodes)
	for i := range exits {
		id, _ := link.NewIdentity()
		startDHTExit(t, d, id, fmt.Sprintf("127.%d.%d.1", 100+i/200, i%200), "")
	}
	run := func(dir, ip string) time.Duration {
		id, err := link.LoadIdentity(filepath.Join(dir, "key"))
		if err != nil {
			id, _ = link.NewIdentity()
			id.Save(filepath.Join(dir, "key"))
		}
		t0 := time.Now()
		c, err := client.New(client.Config{Identity: id, StateDir: dir, SOCKS: "127.0.0.1:0", HTTP: "off", Forward: "off",
			DHT: &client.DHT{Bootstrap: d.Bootstrap(), Listen: net.JoinHostPort(ip, "0"), AllowPrivate: true,
				ProbeTimeout: 2 * time.Second, SendLimiter: rate.NewLimiter(rate.Inf, 0), OpTimeout: 10 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); c.Run(ctx) }()
		waitLong(t, "a usable exit", 60*time.Second, func() bool { return c.Pool().Status().State == "up" })
		el := time.Since(t0)
		cancel()
		<-done
		return el
	}
	var cold, warm []time.Duration
	for i := range trials {
		dir := t.TempDir()
		ip := fmt.Sprintf("127.%d.%d.1", 200+i/200, i%200)
		cold = append(cold, run(dir, ip))
		warm = append(warm, run(dir, ip))
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[int(float64(len(s)-1)*p)].Round(time.Millisecond)
	}
	t.Logf("%d-node DHT, %d exits, %d trials", nodes, exits, trials)
	t.Logf("cold start to first usable exit: median %v, p90 %v, max %v", pct(cold, .5), pct(cold, .9), pct(cold, 1))
	t.Logf("warm start (saved routing table, cached exits): median %v, p90 %v, max %v", pct(warm, .5), pct(warm, .9), pct(warm, 1))
}
