package testnet

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/swarmvpn/swarmvpn/client"
	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// TestTwoHopAllowListedExit: an exit that serves only the clients on its
// allow-list, and publishes itself on the DHT, is reached through a relay
// that is not on the list: the relay verifies the exit on a
// descriptor-only link, which such an exit answers whatever its
// allow-list, and the client's own link inside (with the key on the list)
// carries its flows. The relay itself gets no client link
// there, and a client off the list gets none through the same relay.
func TestTwoHopAllowListedExit(t *testing.T) {
	exitID, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	clientID, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	listed := clientID.ForExit(exitID.ID()).ID()
	// The exit publishes itself on the DHT: its descriptor is public.
	d := StartDHT(t, 8)
	conn, err := net.ListenPacket("udp4", "127.1.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ex := StartExitNode(t, exit.Config{Link: link.Config{Identity: exitID},
		Allow: func(id link.PeerID) bool { return id == listed },
		DHT:   &exit.DHTConfig{Node: DHTNodeConfig(conn, d.Bootstrap())}}, "127.1.0.1:0")
	waitLong(t, "the exit to publish itself", 30*time.Second, func() bool {
		s, _ := ex.Exit.DHT()
		return s.Publishing
	})
	relay := StartExitNode(t, exit.Config{}, "127.2.0.1:0")

	run := func(id *link.Identity, dialWait time.Duration) (*client.Client, string) {
		c, err := client.New(client.Config{Identity: id, Exits: []link.ExitAddr{ex.Addr}, Hops: 2,
			Relays: []link.ExitAddr{relay.Addr}, StateDir: t.TempDir(), SOCKS: "127.0.0.1:0", HTTP: "off", Forward: "off",
			Tuning: client.Tuning{DialWait: dialWait, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			serve(t, "client", func() error { return c.Run(ctx) })
		}()
		t.Cleanup(func() { cancel(); <-done })
		return c, c.SOCKSAddr()
	}

	c, socks := run(clientID, 10*time.Second)
	download(t, socks, 1<<20)
	st := c.Pool().Status()
	if st.State != pool.StateUp || st.Relay.ID != relay.Addr.ID || st.Exit.ID != ex.Addr.ID {
		t.Fatalf("status %+v: want up through relay %s to exit %s", st, relay.Addr.ID.Short(), ex.Addr.ID.Short())
	}
	es := ex.Exit.Stats()
	if es.DescOnly == 0 || es.LinksAccepted != 1 {
		t.Fatalf("exit stats %+v: want the relay's descriptor-only link and one client link", es)
	}
	if rs := relay.Exit.RelayStats(); rs.Flows == 0 || rs.RefusedUnverified != 0 {
		t.Fatalf("relay stats %+v: want the link relayed, nothing refused", rs)
	}

	// A client off the list: the relay carries its link, the exit refuses
	// it, and nothing is downloaded.
	stranger, err := link.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	_, socks2 := run(stranger, 500*time.Millisecond)
	tg := StartTarget(t, "127.0.0.1:0", func(c net.Conn) { c.Close() })
	if c, _, err := SOCKS5Dial(t.Context(), socks2, tg.Addr); err == nil {
		c.Close()
		t.Fatal("a client off the allow-list got a flow through the relay")
	}
	if n := ex.Exit.Stats().LinksAccepted; n != 1 {
		t.Fatalf("exit accepted %d client links, want only the listed client's", n)
	}
}
