package link

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
)

// deriveSalt separates the keys derived here from any other use of the
// seed.
const deriveSalt = "swarmvpn client identity v1"

// ForExit returns the identity this identity presents to the exit (or
// relay) exit: an ed25519 key whose seed is HKDF-SHA256 of this key's seed,
// with salt "swarmvpn client identity v1" and the exit's 32-byte peer ID as
// info. Two exits thus see two unrelated peer IDs of one user, while one
// exit sees the same peer ID each time, from any path.
func (i *Identity) ForExit(exit PeerID) *Identity {
	seed, err := hkdf.Key(sha256.New, i.key.Seed(), []byte(deriveSalt), string(exit[:]), ed25519.SeedSize)
	if err != nil { // only for lengths HKDF cannot give; SeedSize is not one
		panic("link: derive identity: " + err.Error())
	}
	return &Identity{key: ed25519.NewKeyFromSeed(seed)}
}
