package mainline

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Publisher defaults.
const (
	// DefaultRepublishMin and DefaultRepublishMax bound the jittered interval between republishes
	// of an unchanged item (nodes drop items after about two hours).
	DefaultRepublishMin = 45 * time.Minute
	DefaultRepublishMax = 60 * time.Minute
	// DefaultReannounce is the interval between announces (nodes forget an announced peer after
	// about 30 minutes, so announcing every 15 survives one lost round); jittered by ±10%.
	DefaultReannounce = 15 * time.Minute
	// DefaultRetryMin and DefaultRetryMax bound the backoff after a failed announce or publish.
	DefaultRetryMin = 30 * time.Second
	DefaultRetryMax = 10 * time.Minute
)

// publishTarget is what a Publisher drives; *Node is one.
type publishTarget interface {
	Announce(ctx context.Context, port int) error
	Publish(ctx context.Context, key ed25519.PrivateKey, salt, value []byte, seq int64) error
}

var _ publishTarget = (*Node)(nil)

// PublisherConfig configures a Publisher. The zero value of each field means its default.
type PublisherConfig struct {
	// Key signs the item; its public key is where clients find it. Required.
	Key ed25519.PrivateKey
	// Salt of the item (default ExitSalt).
	Salt []byte
	// Port is the link port announced on the rendezvous hash; 0 announces nothing.
	Port int
	// Seq returns a sequence number for a changed value. The Publisher uses
	// max(Seq(), previous+1, highest seen on the DHT+1), so seq grows within a run whatever Seq
	// returns. It must grow across restarts: the default, Unix seconds, does as long as the clock
	// does not go back (a value changed twice within a second gets previous+1).
	Seq func() int64
	// RepublishMin/RepublishMax bound the jittered interval between republishes of an unchanged
	// value (defaults DefaultRepublishMin, DefaultRepublishMax).
	RepublishMin, RepublishMax time.Duration
	// Reannounce is the interval between announces (default DefaultReannounce, ±10% jitter).
	Reannounce time.Duration
	// RetryMin/RetryMax bound the exponential backoff after a failure (defaults DefaultRetryMin,
	// DefaultRetryMax).
	RetryMin, RetryMax time.Duration
	// Log receives failures (nil: discard).
	Log *slog.Logger
}

// Publisher keeps an exit present on the DHT: it announces Port on the rendezvous hash every
// Reannounce (and at once when the UTC day changes) and publishes the value set by SetValue every
// 45–60 minutes, and at once when it changes, with a sequence number that only grows.
type Publisher struct {
	cfg    PublisherConfig
	target publishTarget

	mu      sync.Mutex
	value   []byte // nil until SetValue
	changed chan struct{}
	seq     int64 // last seq published (or tried)
	running bool
}

// NewPublisher validates cfg and returns a Publisher that publishes through n once Run is called.
func NewPublisher(n *Node, cfg PublisherConfig) (*Publisher, error) {
	return newPublisher(n, cfg)
}

func newPublisher(t publishTarget, cfg PublisherConfig) (*Publisher, error) {
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("dht publisher: Key must be an ed25519 private key")
	}
	if cfg.Salt == nil {
		cfg.Salt = []byte(ExitSalt)
	}
	if len(cfg.Salt) > MaxSaltSize {
		return nil, fmt.Errorf("dht publisher: salt of %d bytes, at most %d", len(cfg.Salt), MaxSaltSize)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("dht publisher: port %d out of range", cfg.Port)
	}
	if cfg.Seq == nil {
		cfg.Seq = func() int64 { return time.Now().Unix() }
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.RepublishMin, DefaultRepublishMin)
	def(&cfg.RepublishMax, DefaultRepublishMax)
	def(&cfg.Reannounce, DefaultReannounce)
	def(&cfg.RetryMin, DefaultRetryMin)
	def(&cfg.RetryMax, DefaultRetryMax)
	if cfg.RepublishMin < 0 || cfg.RepublishMax < cfg.RepublishMin || cfg.Reannounce < 0 ||
		cfg.RetryMin < 0 || cfg.RetryMax < cfg.RetryMin {
		return nil, errors.New("dht publisher: intervals must be positive and min <= max")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{cfg: cfg, target: t, changed: make(chan struct{}, 1)}, nil
}

// SetValue sets the value to publish (at most MaxValueSize bytes). A value different from the
// current one is published at once with a new sequence number.
func (p *Publisher) SetValue(v []byte) error {
	if len(v) > MaxValueSize {
		return fmt.Errorf("dht publisher: value of %d bytes, at most %d", len(v), MaxValueSize)
	}
	p.mu.Lock()
	same := p.value != nil && bytes.Equal(p.value, v)
	if !same {
		p.value = bytes.Clone(v)
		if p.value == nil {
			p.value = []byte{}
		}
	}
	p.mu.Unlock()
	if !same {
		select {
		case p.changed <- struct{}{}:
		default:
		}
	}
	return nil
}

// Seq is the sequence number of the last value published (0 before the first).
func (p *Publisher) Seq() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq
}

// Run announces and publishes until ctx is cancelled; it returns nil then.
func (p *Publisher) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return errors.New("dht publisher: Run called twice")
	}
	p.running = true
	p.mu.Unlock()

	var (
		nextAnnounce, nextPublish time.Time // zero: due now
		announceDay               string
		announceFails, pubFails   int
		published                 []byte // value last published successfully
		dirty                     bool   // value differs from the last one given a seq
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		if p.cfg.Port != 0 {
			day := now.UTC().Format(time.DateOnly)
			if !now.Before(nextAnnounce) || day != announceDay {
				announceDay = day
				if err := p.target.Announce(ctx, p.cfg.Port); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					announceFails++
					nextAnnounce = time.Now().Add(p.backoff(announceFails))
					p.cfg.Log.Warn("dht announce failed", "err", err, "retry_in", time.Until(nextAnnounce).Round(time.Second))
				} else {
					announceFails = 0
					nextAnnounce = time.Now().Add(jitter(p.cfg.Reannounce, p.cfg.Reannounce/10))
				}
			}
		}

		p.mu.Lock()
		value := p.value
		if value != nil && !bytes.Equal(value, published) && !dirty {
			dirty = true
		}
		p.mu.Unlock()
		if value != nil && (dirty || !time.Now().Before(nextPublish)) {
			seq := p.Seq()
			if dirty || seq == 0 {
				seq = max(p.cfg.Seq(), seq+1)
			}
			err := p.target.Publish(ctx, p.cfg.Key, p.cfg.Salt, value, seq)
			p.mu.Lock()
			p.seq = seq
			p.mu.Unlock()
			var se *SeqError
			switch {
			case err == nil:
				pubFails = 0
				published, dirty = value, false
				nextPublish = time.Now().Add(p.cfg.RepublishMin +
					time.Duration(rand.Int64N(int64(p.cfg.RepublishMax-p.cfg.RepublishMin)+1)))
			case ctx.Err() != nil:
				return nil
			case errors.As(err, &se):
				// The DHT holds a newer item of ours (a clock that went back, another instance):
				// go above it at once, once.
				p.mu.Lock()
				p.seq = max(p.seq, se.Highest)
				p.mu.Unlock()
				dirty = true
				if pubFails == 0 {
					pubFails++
					nextPublish = time.Time{}
					continue
				}
				fallthrough
			default:
				pubFails++
				nextPublish = time.Now().Add(p.backoff(pubFails))
				p.cfg.Log.Warn("dht publish failed", "err", err, "retry_in", time.Until(nextPublish).Round(time.Second))
			}
		}

		wait := time.Duration(-1)
		for _, t := range []time.Time{nextAnnounce, nextPublish} {
			if t.IsZero() {
				continue
			}
			if d := time.Until(t); wait < 0 || d < wait {
				wait = d
			}
		}
		if p.cfg.Port != 0 {
			// Wake at 00:00 UTC to announce on the new day's hash.
			if d := time.Until(nextMidnight(time.Now())); wait < 0 || d < wait {
				wait = d
			}
		}
		if wait < 0 {
			wait = p.cfg.RepublishMax
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-p.changed:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

// backoff is the wait after the nth consecutive failure.
func (p *Publisher) backoff(n int) time.Duration {
	d := p.cfg.RetryMin
	for i := 1; i < n && d < p.cfg.RetryMax; i++ {
		d *= 2
	}
	return jitter(min(d, p.cfg.RetryMax), min(d, p.cfg.RetryMax)/5)
}

// jitter returns d ± spread.
func jitter(d, spread time.Duration) time.Duration {
	if spread <= 0 {
		return d
	}
	return d - spread + time.Duration(rand.Int64N(int64(2*spread)+1))
}

func nextMidnight(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}
