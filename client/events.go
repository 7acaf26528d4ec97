package client

import (
	"fmt"
	"sync"
	"time"

	"github.com/swarmvpn/swarmvpn/exitnet/pool"
	"github.com/swarmvpn/swarmvpn/internal/link"
)

// maxEvents is how many recent events a client keeps.
const maxEvents = 50

// Event is something that happened to the client, for the status page and
// 'status --json': a link came up or went down, the client moved to another
// exit, the forwarded port changed, an exit refused or failed.
type Event struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"` // one of the Event* kinds
	Text string    `json:"text"` // one line for a person
	// Repeat counts how many more times the same thing happened right
	// after, folded into this event.
	Repeat int `json:"repeat,omitempty"`
}

// The kinds of Event.
const (
	EventLinkUp      = "link_up"
	EventLinkDown    = "link_down"
	EventFailover    = "failover"    // new flows moved to another exit
	EventPort        = "port"        // a forwarded port was obtained or changed
	EventRefused     = "refused"     // an exit refused or could not be reached
	EventQBittorrent = "qbittorrent" // qBittorrent's settings changed for better or worse
	EventReach       = "reach"       // the forwarded port became reachable or stopped being so
)

// events keeps the client's recent events in a bounded ring, derived from
// the pool's status changes, and wakes those waiting for news. Safe for
// concurrent use; the zero value is not ready: use newEvents.
type events struct {
	forward bool // a forwarded port is asked for
	now     func() time.Time

	mu       sync.Mutex
	ring     []Event // oldest first, at most maxEvents
	last     pool.Status
	lastPort uint16        // the last port announced in an event
	lastUp   link.ExitAddr // the exit of the last link that was up
	downAt   time.Time     // when the last link went down
	wake     chan struct{}
}

// failoverWithin is how soon a link to another exit must come up after the
// last one went down to count as a failover rather than a new start.
const failoverWithin = 30 * time.Second

func newEvents(forward bool) *events {
	return &events{forward: forward, now: time.Now, wake: make(chan struct{}),
		last: pool.Status{State: pool.StateConnecting}}
}

// observe turns a change of the pool's status into events.
func (e *events) observe(st pool.Status) {
	e.mu.Lock()
	defer e.mu.Unlock()
	prev := e.last
	e.last = st
	up, wasUp := st.State == pool.StateUp, prev.State == pool.StateUp
	id := st.Exit.ID.Short()
	now := e.now()
	switch {
	case up && wasUp && st.Exit.ID != prev.Exit.ID:
		e.addLocked(EventFailover, fmt.Sprintf("new flows moved from exit %s to exit %s (%s)", prev.Exit.ID.Short(), id, st.Exit.Addr))
	case up && !wasUp && e.lastUp.Addr != "" && e.lastUp.ID != st.Exit.ID && now.Sub(e.downAt) < failoverWithin:
		e.addLocked(EventFailover, fmt.Sprintf("new flows moved from exit %s to exit %s (%s) after %s",
			e.lastUp.ID.Short(), id, st.Exit.Addr, now.Sub(e.downAt).Round(time.Millisecond)))
	case up && !wasUp:
		e.addLocked(EventLinkUp, fmt.Sprintf("link up to exit %s (%s)", id, st.Exit.Addr))
	case !up && wasUp:
		e.downAt = now
		text := "link to exit " + prev.Exit.ID.Short() + " down"
		if st.LastError != "" && st.LastError != prev.LastError {
			text += ": " + st.LastError
		}
		e.addLocked(EventLinkDown, text)
	case !up && st.LastError != "" && st.LastError != prev.LastError:
		e.addLocked(EventRefused, st.LastError)
	}
	if !up {
		return
	}
	e.lastUp = st.Exit
	newLink := !wasUp || st.Exit.ID != prev.Exit.ID
	switch {
	case st.ForwardedPort != 0 && st.ForwardedPort != e.lastPort:
		text := fmt.Sprintf("forwarded port %d at exit %s", st.ForwardedPort, id)
		if e.lastPort != 0 {
			text += fmt.Sprintf(" (was %d)", e.lastPort)
		}
		e.lastPort = st.ForwardedPort
		e.addLocked(EventPort, text)
	case st.ForwardedPort == 0 && newLink && e.forward:
		e.addLocked(EventRefused, "exit "+id+" lends no forwarded port: peers cannot connect to you")
	}
}

// add records an event that does not come from the pool.
func (e *events) add(kind, text string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.addLocked(kind, text)
}

// addLocked appends an event, folding it into the newest one when it says
// the same, and wakes the waiters.
func (e *events) addLocked(kind, text string) {
	if n := len(e.ring); n > 0 && e.ring[n-1].Kind == kind && e.ring[n-1].Text == text {
		e.ring[n-1].Repeat++
		e.ring[n-1].At = e.now()
	} else {
		if n == maxEvents {
			copy(e.ring, e.ring[1:])
			e.ring = e.ring[:n-1]
		}
		e.ring = append(e.ring, Event{At: e.now(), Kind: kind, Text: text})
	}
	close(e.wake)
	e.wake = make(chan struct{})
}

// list returns the events, oldest first.
func (e *events) list() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.ring...)
}

// changed returns a channel closed at the next event.
func (e *events) changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.wake
}
