package testnet

import (
	"bytes"
	"crypto/sha256"
	"io"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// uploadOverLongLink sends size bytes through an exit reached over a link
// with 20 ms of round trip, so that yamux grows the stream's receive window
// at the exit, and returns what the exit's limits saw.
func uploadOverLongLink(t *testing.T, cfg exitnet.ExitConfig, size int) exitnet.LimitStats {
	t.Helper()
	exit := StartExitNode(t, cfg, "127.0.0.1:0")
	far := link.ExitAddr{ID: exit.Addr.ID, Addr: DelayProxy(t, exit.Addr.Addr, 10*time.Millisecond)}
	pool := startPool(t, far, nil)
	tg := StartTarget(t, "127.0.0.1:0", Digest(nil))
	c, err := pool.DialContext(t.Context(), "tcp", tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	go func() {
		c.Write(payload)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	got, err := io.ReadAll(c)
	sum := sha256.Sum256(payload)
	if err != nil || !bytes.Equal(got, sum[:]) {
		t.Fatalf("upload of %d bytes: target digest %x, %v; want %x", size, got, err, sum)
	}
	return exit.Exit.LimitStats()
}

// TestWindowGrowthStopsAtBufferCap: over a long link, a bulk upload grows
// its stream's receive window at the exit well past 768 KiB when nothing
// caps it; with MaxBufferPerClient at 768 KiB the link's reservations stop
// there, growth is refused, and the bytes still arrive intact.
func TestWindowGrowthStopsAtBufferCap(t *testing.T) {
	if testing.Short() {
		t.Skip("bulk transfer")
	}
	const limit = 768 << 10
	const size = 24 << 20
	free := uploadOverLongLink(t, exitnet.ExitConfig{}, size)
	if free.BufferPeak <= limit {
		t.Fatalf("uncapped: the window never grew past %d (peak %d); the capped run would prove nothing", limit, free.BufferPeak)
	}
	capped := uploadOverLongLink(t, exitnet.ExitConfig{MaxBufferPerClient: limit}, size)
	if capped.BufferPeak > limit || capped.WindowGrowthRefused == 0 {
		t.Fatalf("capped at %d: peak %d, %d growths refused; want peak within the cap and some refused",
			limit, capped.BufferPeak, capped.WindowGrowthRefused)
	}
	t.Logf("peak reserved: %d uncapped, %d capped (%d growths refused)", free.BufferPeak, capped.BufferPeak, capped.WindowGrowthRefused)
}
