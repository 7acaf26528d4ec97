package mainline

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"golang.org/x/time/rate"
)

// DefaultBootstrap is the list of well-known public routers used when Config.Bootstrap is nil.
var DefaultBootstrap = []string{
	"router.bittorrent.com:6881",
	"dht.transmissionbt.com:6881",
	"router.utorrent.com:6881",
	"dht.libtorrent.org:25401",
}

// Defaults for the zero values of Config.
const (
	DefaultListen           = ":0"
	DefaultSendRate         = 100 // packets per second, per node
	DefaultOpTimeout        = 30 * time.Second
	DefaultMaxCandidates    = 64
	DefaultCandidatesPerNet = 2
	// DefaultStateInterval is how often the routing table is written to Config.StateFile while
	// the node runs (it is also written when Run returns).
	DefaultStateInterval = 10 * time.Minute
)

// Config configures a Node. The zero value of each field means its default.
type Config struct {
	// Conn is the UDP socket to use. The Node owns it and closes it when Run returns. If nil, the
	// Node listens on Listen.
	Conn net.PacketConn
	// Listen is the UDP address to listen on when Conn is nil (default ":0").
	Listen string

	// Bootstrap lists host:port of nodes to start from when the routing table is empty. nil means
	// DefaultBootstrap (the public routers). Explicit bootstrap addresses are always allowed, even
	// private ones.
	Bootstrap []string

	// StateFile, if set, is where the routing table (and node ID) is saved and loaded from at
	// start, so that a restart needs no bootstrap router.
	StateFile string

	// Log receives the node's messages (nil: discard). DHT traffic details are logged at Debug.
	Log *slog.Logger

	// AllowPrivate accepts DHT nodes and candidate exits at loopback, private, link-local and
	// CGNAT addresses (labs and tests). Without it such addresses are dropped and counted.
	AllowPrivate bool

	// SendLimiter bounds the packets this node sends. nil means a limiter of DefaultSendRate
	// packets/s for this node alone (never one shared by all nodes of the process).
	SendLimiter *rate.Limiter

	// OpTimeout bounds each operation (announce, lookup, publish, get) whose context has no
	// earlier deadline (default DefaultOpTimeout).
	OpTimeout time.Duration

	// MaxCandidates bounds the addresses Lookup returns (default DefaultMaxCandidates).
	MaxCandidates int
	// CandidatesPerNet bounds the addresses Lookup returns per IPv4 /24 or IPv6 /48
	// (default DefaultCandidatesPerNet).
	CandidatesPerNet int

	// StateInterval is how often the state file is written while running (default
	// DefaultStateInterval).
	StateInterval time.Duration
}

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Bootstrap == nil {
		c.Bootstrap = DefaultBootstrap
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.SendLimiter == nil {
		c.SendLimiter = rate.NewLimiter(DefaultSendRate, DefaultSendRate)
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.MaxCandidates == 0 {
		c.MaxCandidates = DefaultMaxCandidates
	}
	if c.CandidatesPerNet == 0 {
		c.CandidatesPerNet = DefaultCandidatesPerNet
	}
	if c.StateInterval == 0 {
		c.StateInterval = DefaultStateInterval
	}
	return c
}

func (c Config) validate() error {
	if c.Conn == nil {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return fmt.Errorf("dht listen address %q: want HOST:PORT: %w", c.Listen, err)
		}
	}
	for _, b := range c.Bootstrap {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return fmt.Errorf("dht bootstrap %q: want HOST:PORT", b)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("dht bootstrap %q: port must be 1-65535", b)
		}
	}
	if c.OpTimeout < 0 || c.StateInterval < 0 {
		return errors.New("dht config: durations must not be negative")
	}
	if c.MaxCandidates < 0 || c.MaxCandidates > maxCandidatesLimit {
		return fmt.Errorf("dht config: MaxCandidates must be 0-%d", maxCandidatesLimit)
	}
	if c.CandidatesPerNet < 0 {
		return errors.New("dht config: CandidatesPerNet must not be negative")
	}
	return nil
}

// maxCandidatesLimit is the most candidates a single Lookup may ever return.
const maxCandidatesLimit = 1024
