package exit

import (
	"log/slog"
	"sync"
	"time"
)

// refusalLogEvery is how often, at most, policy refusals are reported at
// Info.
const refusalLogEvery = time.Minute

// refusalLog reports flows the policy refused at Info, at most once per
// refusalLogEvery, with how many there were since it last did, and how to
// allow them. Never which destinations: those are logged at Debug with each
// refusal.
type refusalLog struct {
	mu     sync.Mutex
	last   time.Time
	unsaid int
}

// refused counts a refusal and reports it, with those not yet reported,
// unless a report went out less than refusalLogEvery ago.
func (r *refusalLog) refused(log *slog.Logger) {
	r.mu.Lock()
	r.unsaid++
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < refusalLogEvery {
		r.mu.Unlock()
		return
	}
	n := r.unsaid
	r.unsaid, r.last = 0, now
	r.mu.Unlock()
	log.Info("flows refused by the exit policy", "count", n,
		"hint", "--allow-private carries flows to loopback and private networks, --rule allows others; destinations appear at --log-level debug")
}
