package promshard

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// EventKind is what an [Event] records; its String is one of join, leave,
// targets, handoff, confirm, leader, audit and failed.
type EventKind uint8

// The kinds of events; their names are those of eventNames.
const (
	eventJoin    EventKind = iota // collectors joined the ring
	eventLeave                    // collectors left the ring (sick, drained or gone)
	eventTargets                  // the providers added or removed targets
	eventHandoff                  // hand-offs started: old owners keep targets until the new ones scrape them
	eventConfirm                  // hand-offs ended: the new owners scrape, the old ones let go
	eventLeader                   // this copy became leader, or standby
	eventAudit                    // the audit found targets not scraped as assigned, or found them fixed
	eventFailed                   // a reshard failed
)

var eventNames = []string{"join", "leave", "targets", "handoff", "confirm", "leader", "audit", "failed"}

// String names the kind.
func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// MarshalText is String, so that events read well as JSON.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *EventKind) UnmarshalText(b []byte) error {
	i := slices.Index(eventNames, string(b))
	if i < 0 {
		return fmt.Errorf("promshard: event kind %q: want one of %v", b, eventNames)
	}
	*k = EventKind(i)
	return nil
}

// Event is one thing that happened to a job that an operator wants to see
// afterwards: a collector that joined or left (and the targets that moved
// with it), hand-offs started and confirmed, a leadership change, an audit
// finding, a failed reshard. A refresh that changed nothing is no event.
type Event struct {
	Time time.Time `json:"time"`
	Kind EventKind `json:"kind"`
	// Collectors are the collectors the event is about.
	Collectors []string `json:"collectors,omitempty"`
	// Moved is the number of targets that moved; Targets lists at most
	// eventTargets of them.
	Moved   int      `json:"moved,omitempty"`
	Targets []string `json:"targets,omitempty"`
	// Text says what happened, for a person.
	Text string `json:"text"`
}

// How many events a job keeps: at least historyKeep, and every event of the
// last historyAge up to historyMax.
const (
	historyKeep  = 200
	historyAge   = 24 * time.Hour
	historyMax   = 2000
	eventTargetN = 20 // targets listed in an event
)

// history is a job's events, oldest first.
type history struct {
	mu     sync.Mutex
	events []Event
	audit  string // the text of the last audit event: findings are recorded when they change
}

// add records events, dropping the oldest past the bounds. A failure that
// repeats the last event's text is not recorded again.
func (h *history) add(es ...Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range es {
		if n := len(h.events); e.Kind == eventFailed && n > 0 && h.events[n-1].Kind == eventFailed && h.events[n-1].Text == e.Text {
			continue
		}
		h.events = append(h.events, e)
	}
	drop := 0
	for drop < len(h.events) && (len(h.events)-drop > historyMax ||
		len(h.events)-drop > historyKeep && time.Since(h.events[drop].Time) > historyAge) {
		drop++
	}
	h.events = slices.Delete(h.events, 0, drop)
}

// adopt takes over prev's events, before any of its own.
func (h *history) adopt(prev *history) {
	prev.mu.Lock()
	events, last := slices.Clone(prev.events), prev.audit
	prev.mu.Unlock()
	h.mu.Lock()
	h.events, h.audit = append(events, h.events...), last
	h.mu.Unlock()
}

// list returns the events, newest first.
func (h *history) list() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := slices.Clone(h.events)
	slices.Reverse(out)
	return out
}

// auditEvent records an audit whose findings differ from the last ones
// recorded: problems found (naming the collectors that did not answer and
// those with wrong targets), or every target scraped as assigned again.
func (h *history) auditEvent(r *audit.Report) {
	if r == nil {
		return
	}
	e := Event{Time: r.Time, Kind: eventAudit}
	var parts []string
	for _, st := range audit.States() {
		if n := r.Counts[st]; st != audit.OK && st != audit.InTransit && n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	seen := map[string]bool{}
	for id := range r.Unreachable {
		seen[id] = true
	}
	for _, p := range r.Problems {
		if slices.Equal(p.States, []audit.State{audit.InTransit}) {
			continue // a hand-off under way is no finding
		}
		if len(e.Targets) < eventTargetN {
			e.Targets = append(e.Targets, p.Address)
		}
		for _, id := range p.Intended {
			seen[id] = true
		}
		for _, sc := range p.Scrapes {
			seen[sc.Collector] = true
		}
	}
	if len(r.Unreachable) > 0 {
		parts = append(parts, "did not answer: "+strings.Join(slices.Sorted(maps.Keys(r.Unreachable)), ", "))
	}
	if len(parts) == 0 {
		e.Targets, e.Text = nil, "audit: every target scraped as assigned"
	} else {
		e.Collectors, e.Text = slices.Sorted(maps.Keys(seen)), "audit: "+strings.Join(parts, "; ")
	}
	h.mu.Lock()
	same := e.Text == h.audit || h.audit == "" && len(parts) == 0
	h.audit = e.Text
	h.mu.Unlock()
	if !same {
		h.add(e)
	}
}

// changeEvents are the events of a reshard that wrote next over prev: the
// collectors that joined and left (each leave naming why and listing the
// targets that moved away), targets that came or went, and hand-offs that
// started.
func changeEvents(prev, next *shard.Assignment, leavers []watch.Member, diff shard.Diff, handoffs, handoffsBefore int, now time.Time) []Event {
	if prev == nil {
		return nil
	}
	was := map[string]bool{}
	for _, m := range prev.Members {
		was[m.ID] = true
	}
	is := map[string]bool{}
	for _, m := range next.Members {
		is[m.ID] = true
	}
	why := map[string]string{}
	for _, m := range leavers {
		why[m.ID] = "failed its check"
		if m.State == watch.StateMaintenance {
			why[m.ID] = "drained"
		}
	}
	var out []Event
	for _, m := range prev.Members {
		if is[m.ID] {
			continue
		}
		e := Event{Time: now, Kind: eventLeave, Collectors: []string{m.ID}}
		e.Moved, e.Targets = targetsOf(prev, m.ID)
		reason := why[m.ID]
		if reason == "" {
			reason = "gone from the registry"
		}
		e.Text = fmt.Sprintf("%s left (%s): %d targets moved to %s", m.ID, reason, e.Moved, strings.Join(gainers(diff, m.ID), ", "))
		out = append(out, e)
	}
	for _, m := range next.Members {
		if was[m.ID] {
			continue
		}
		e := Event{Time: now, Kind: eventJoin, Collectors: []string{m.ID}}
		e.Moved, e.Targets = targetsOf(next, m.ID)
		e.Text = fmt.Sprintf("%s joined: %d targets moved to it", m.ID, e.Moved)
		out = append(out, e)
	}
	if len(out) == 0 && diff.Added+diff.Removed > 0 {
		out = append(out, Event{Time: now, Kind: eventTargets, Moved: diff.Moved,
			Text: fmt.Sprintf("targets: %d added, %d removed, %d moved", diff.Added, diff.Removed, diff.Moved)})
	}
	if handoffs > handoffsBefore {
		out = append(out, Event{Time: now, Kind: eventHandoff, Collectors: gainers(diff, ""), Moved: handoffs - handoffsBefore,
			Text: fmt.Sprintf("hand-off: %d targets kept by their old owners until the new ones scrape them", handoffs-handoffsBefore)})
	}
	return out
}

// targetsOf counts a member's targets in a and lists the first few.
func targetsOf(a *shard.Assignment, id string) (n int, list []string) {
	for _, g := range a.Groups[id] {
		for _, addr := range g.Targets {
			n++
			if len(list) < eventTargetN {
				list = append(list, addr)
			}
		}
	}
	return n, list
}

// gainers are the members that gained targets, but except.
func gainers(d shard.Diff, except string) []string {
	var out []string
	for id, md := range d.Members {
		if md.Gained > 0 && id != except {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
