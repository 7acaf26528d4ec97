package mainline

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	k_nearest_nodes "github.com/anacrolix/dht/v2/k-nearest-nodes"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"
)

// BEP 44 limits.
const (
	// MaxItemSize is the largest bencoded value of an item (BEP 44).
	MaxItemSize = 1000
	// MaxValueSize is the largest value Publish accepts: bencoded as a byte string
	// ("996:" + 996 bytes) it is MaxItemSize bytes.
	MaxValueSize = 996
	// MaxSaltSize is the largest salt (BEP 44).
	MaxSaltSize = 64
)

// ErrNotFound is returned by Get when no verified item was found.
var ErrNotFound = errors.New("dht item not found")

// ErrStaleSeq is wrapped by the *SeqError Publish returns when the DHT holds a newer item.
var ErrStaleSeq = errors.New("dht item sequence number not above the stored one")

// SeqError says that the DHT already holds a verified item for the key and salt with sequence
// number Highest, which the one being published (Seq) does not supersede: the caller must publish
// with a sequence number above Highest.
type SeqError struct {
	Seq, Highest int64
}

func (e *SeqError) Error() string {
	return fmt.Sprintf("dht publish seq %d: the dht holds seq %d", e.Seq, e.Highest)
}

func (e *SeqError) Unwrap() error { return ErrStaleSeq }

// Publish stores value as the BEP 44 mutable item of key under salt, with sequence number seq,
// on the nodes closest to its target. value is opaque here: it is stored as a bencoded byte string
// and must be at most MaxValueSize bytes. seq must grow whenever value changes, across restarts
// too (a time-based seq such as Unix seconds does); republishing the same value with the same seq
// refreshes it. It returns a *SeqError if the DHT holds a newer item, and ErrNoNode (wrapped) if
// no node stored it.
func (n *Node) Publish(ctx context.Context, key ed25519.PrivateKey, salt, value []byte, seq int64) error {
	if len(key) != ed25519.PrivateKeySize {
		return errors.New("dht publish: not an ed25519 private key")
	}
	if len(salt) > MaxSaltSize {
		return fmt.Errorf("dht publish: salt of %d bytes, at most %d", len(salt), MaxSaltSize)
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("dht publish: value of %d bytes, at most %d", len(value), MaxValueSize)
	}
	if seq < 0 {
		return fmt.Errorf("dht publish: negative seq %d", seq)
	}
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	srv, err := n.server(ctx)
	if err != nil {
		return fmt.Errorf("dht publish: %w", err)
	}

	var pub [32]byte
	copy(pub[:], key.Public().(ed25519.PublicKey))
	put := bep44.Put{V: bytes.Clone(value), K: &pub, Salt: bytes.Clone(salt), Seq: seq}
	put.Sign(key)

	res, err := n.traverseItem(ctx, srv, pub, salt)
	if err != nil {
		n.stats.publishFailures.Add(1)
		return fmt.Errorf("dht publish: %w", err)
	}
	if res.found && (res.seq > seq || (res.seq == seq && !bytes.Equal(res.value, value))) {
		n.stats.publishFailures.Add(1)
		return fmt.Errorf("dht publish: %w", &SeqError{Seq: seq, Highest: res.seq})
	}
	var stored int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range res.closest {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qr := srv.Put(ctx, dht.NewAddr(c.addr.UDP()), put, c.token, dht.QueryRateLimiting{})
			if qr.ToError() == nil {
				mu.Lock()
				stored++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if stored == 0 {
		n.stats.publishFailures.Add(1)
		if ctx.Err() != nil {
			return fmt.Errorf("dht publish: %w", ctx.Err())
		}
		return fmt.Errorf("dht publish: %w", ErrNoNode)
	}
	n.stats.publishes.Add(1)
	n.stats.touch(&n.stats.lastPublish)
	n.log.Debug("dht published", "seq", seq, "nodes", stored)
	return nil
}

// Get fetches the mutable item of pub under salt: among the items the nodes closest to its target
// return, the one with the highest seq whose key, salt, signature, size and encoding verify.
// Items that do not verify are dropped and counted (Stats.ItemsRejected). It returns ErrNotFound
// (wrapped) when no verified item was found.
func (n *Node) Get(ctx context.Context, pub ed25519.PublicKey, salt []byte) (value []byte, seq int64, err error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, 0, errors.New("dht get: not an ed25519 public key")
	}
	if len(salt) > MaxSaltSize {
		return nil, 0, fmt.Errorf("dht get: salt of %d bytes, at most %d", len(salt), MaxSaltSize)
	}
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	srv, err := n.server(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("dht get: %w", err)
	}
	res, err := n.traverseItem(ctx, srv, [32]byte(pub), salt)
	if err != nil {
		n.stats.getFailures.Add(1)
		return nil, 0, fmt.Errorf("dht get: %w", err)
	}
	if !res.found {
		n.stats.getFailures.Add(1)
		return nil, 0, fmt.Errorf("dht get: %w", ErrNotFound)
	}
	n.stats.gets.Add(1)
	n.stats.touch(&n.stats.lastGet)
	return res.value, res.seq, nil
}

// itemK is how many of the nodes closest to an item's target a get
// traversal asks, and a put writes to.
const itemK = 16

// itemResult is what a get traversal learned.
type itemResult struct {
	found   bool
	value   []byte // decoded
	seq     int64
	closest []tokenNode // nodes closest to the target that gave a write token
}

type tokenNode struct {
	addr  krpc.NodeAddr
	token string
}

// maxTokenSize bounds the write tokens kept from replies.
const maxTokenSize = 64

// traverseItem runs a BEP 44 get traversal toward the target of (pub, salt), verifying every item
// it receives. It never trusts a reply: the library's own getput.Get dereferences a missing seq.
func (n *Node) traverseItem(ctx context.Context, srv *dht.Server, pub [32]byte, salt []byte) (itemResult, error) {
	target := bep44.MakeMutableTarget(pub, salt)
	var mu sync.Mutex
	var res itemResult
	replies := 0
	op := traversal.Start(traversal.OperationInput{
		Target: target,
		// Twice the usual eight closest: nodes that placed themselves next
		// to the target (cheap, IDs are free) and answer with an older item
		// must not be all the traversal hears.
		K:          itemK,
		Alpha:      8,
		NodeFilter: srv.TraversalNodeFilter,
		DataFilter: func(data any) bool { _, ok := data.(string); return ok },
		DoQuery: func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
			qr := srv.Get(qctx, dht.NewAddr(addr.UDP()), target, nil, dht.QueryRateLimiting{})
			r := qr.Reply.R
			if r == nil {
				return traversal.QueryResult{}
			}
			mu.Lock()
			replies++
			mu.Unlock()
			if len(r.V) > 0 || r.Sig != ([64]byte{}) {
				if v, seq, ok := n.verifyItem(r, pub, salt); ok {
					mu.Lock()
					if !res.found || seq > res.seq {
						res.found, res.value, res.seq = true, v, seq
					}
					mu.Unlock()
				}
			}
			tqr := qr.TraversalQueryResult(addr)
			tok, _ := tqr.ClosestData.(string)
			if tok == "" || len(tok) > maxTokenSize {
				// A node with no usable token cannot be written to; do not count it as closest.
				tqr.ResponseFrom = nil
				tqr.ClosestData = nil
			}
			return tqr
		},
	})
	nodes, err := srv.TraversalStartingNodes()
	if err != nil {
		op.Stop()
		<-op.Stopped()
		return res, err
	}
	op.AddNodes(nodes)
	select {
	case <-op.Stalled():
	case <-ctx.Done():
	}
	op.Stop()
	<-op.Stopped()
	mu.Lock()
	defer mu.Unlock()
	if replies == 0 {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, ErrNoNode
	}
	op.Closest().Range(func(e k_nearest_nodes.Elem) {
		tok, ok := e.Data.(string)
		if !ok {
			return
		}
		res.closest = append(res.closest, tokenNode{addr: e.Addr.ToNodeAddr(), token: tok})
	})
	return res, nil
}

// verifyItem checks a get reply's item against the key and salt asked for, counting rejections.
func (n *Node) verifyItem(r *krpc.Return, pub [32]byte, salt []byte) ([]byte, int64, bool) {
	c := &n.stats
	switch {
	case r.Seq == nil || len(r.V) == 0:
		c.rejMalformed.Add(1)
	case r.K != pub:
		c.rejWrongKey.Add(1)
	case len(r.V) > MaxItemSize:
		c.rejOversize.Add(1)
	case !bep44.Verify(pub[:], salt, *r.Seq, r.V, r.Sig[:]):
		c.rejSignature.Add(1)
	default:
		v, err := decodeByteString(r.V)
		if err != nil {
			c.rejEncoding.Add(1)
			return nil, 0, false
		}
		return v, *r.Seq, true
	}
	return nil, 0, false
}

// decodeByteString decodes a bencoded byte string ("<len>:<bytes>") that must span all of b.
func decodeByteString(b []byte) ([]byte, error) {
	i := bytes.IndexByte(b, ':')
	if i < 1 || i > 4 {
		return nil, errors.New("not a bencoded byte string")
	}
	digits := b[:i]
	if len(digits) > 1 && digits[0] == '0' {
		return nil, errors.New("bencoded length with a leading zero")
	}
	for _, d := range digits {
		if d < '0' || d > '9' {
			return nil, errors.New("bencoded length is not a number")
		}
	}
	l, err := strconv.Atoi(string(digits))
	if err != nil {
		return nil, err
	}
	if l != len(b)-i-1 {
		return nil, errors.New("bencoded length does not match")
	}
	return bytes.Clone(b[i+1:]), nil
}
