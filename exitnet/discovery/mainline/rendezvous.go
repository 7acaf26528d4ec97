package mainline

import (
	"crypto/sha1"
	"time"
)

// RendezvousString is the fixed prefix of the rendezvous info-hash.
const RendezvousString = "swarmvpn/exit/rendezvous/v1/"

// ExitSalt is the BEP 44 salt under which an exit publishes its descriptor.
const ExitSalt = "swarmvpn/exit/v1"

// RendezvousHash is the BEP 5 info-hash exits announce on during the UTC day of t:
// SHA-1("swarmvpn/exit/rendezvous/v1/" + "YYYY-MM-DD"). It changes at 00:00 UTC, so no info-hash
// stays a permanent target; clients look up today's and yesterday's.
func RendezvousHash(t time.Time) [20]byte {
	return sha1.Sum([]byte(RendezvousString + t.UTC().Format(time.DateOnly)))
}
