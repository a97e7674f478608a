package promshard

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/watch"
)

// departedFor is how long a collector that left is still audited: one that
// left but runs on is caught scraping its old targets.
const departedFor = 10 * time.Minute

// roster is what a job knows of its collectors: the last member set, the
// sick ones from a [watch.Roster], and those that left lately. The member
// source's goroutine writes it; the loop, the reload queue and the audit
// read it.
type roster struct {
	mu       sync.Mutex
	members  []watch.Member
	sick     []watch.Member // registered, not healthy; nil: the source keeps no roster
	have     bool
	haveCh   chan struct{} // closed at the first member set
	departed map[string]departure
}

// departure is a member that left the member set, and when.
type departure struct {
	m  watch.Member
	at time.Time
}

func newRoster() *roster {
	return &roster{haveCh: make(chan struct{}), departed: map[string]departure{}}
}

// set takes a member set and the sick collectors.
func (r *roster) set(ms, sick []watch.Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members, r.sick = ms, sick
	if !r.have {
		r.have = true
		close(r.haveCh)
	}
}

// get returns the member set and the sick collectors.
func (r *roster) get() (members, sick []watch.Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members, r.sick
}

// started reports whether a member set arrived.
func (r *roster) started() bool {
	select {
	case <-r.haveCh:
		return true
	default:
		return false
	}
}

// status says what is known of a collector, for the reload queue: a member,
// registered but not healthy, gone (the roster knows every registered
// collector and not this one), or unknown.
func (r *roster) status(id string) reload.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	has := func(m watch.Member) bool { return m.ID == id }
	switch {
	case slices.ContainsFunc(r.members, has):
		return reload.StatusMember
	case slices.ContainsFunc(r.sick, has):
		return reload.StatusRegistered
	case r.sick != nil:
		return reload.StatusGone
	}
	return reload.StatusUnknown
}

// left records the members of prev that are not in now, and forgets those
// back.
func (r *roster) left(now, prev []watch.Member, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range prev {
		if !slices.ContainsFunc(now, func(n watch.Member) bool { return n.ID == m.ID }) {
			r.departed[m.ID] = departure{m, at}
		}
	}
	for _, m := range now {
		delete(r.departed, m.ID)
	}
}

// recentlyLeft returns the collectors that left within departedFor of now,
// and forgets the older ones.
func (r *roster) recentlyLeft(now time.Time) []watch.Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []watch.Member
	for id, d := range r.departed {
		if now.Sub(d.at) > departedFor {
			delete(r.departed, id)
		} else {
			out = append(out, d.m)
		}
	}
	return out
}

// splitDrains takes the healthy members that carry tag out of the ring, as
// drained (State maintenance).
func splitDrains(ms []watch.Member, tag string) (keep, drained []watch.Member) {
	if tag == "" {
		return ms, nil
	}
	for _, m := range ms {
		if slices.Contains(m.Tags, tag) {
			m.State = watch.StateMaintenance
			drained = append(drained, m)
		} else {
			keep = append(keep, m)
		}
	}
	return keep, drained
}

// leaversOf are the collectors out of the ring that are still registered
// (and so may still run): the drained and the sick, sorted by ID. A
// collector whose ID an output cannot serve is left out, as it is of the
// ring.
func leaversOf(sick, drained []watch.Member, outs outputs) []watch.Member {
	out := slices.Concat(drained, sick)
	out = slices.DeleteFunc(out, func(m watch.Member) bool { return outs.check(m.ID) != nil })
	slices.SortFunc(out, func(a, b watch.Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// withEmpty gives each leaver that holds nothing an empty list.
func withEmpty(groups map[string][]*tstore.Group, leavers []watch.Member) map[string][]*tstore.Group {
	var out map[string][]*tstore.Group
	for _, m := range leavers {
		if _, ok := groups[m.ID]; ok {
			continue // it still keeps targets being handed over
		}
		if out == nil {
			out = maps.Clone(groups)
		}
		out[m.ID] = []*tstore.Group{}
	}
	if out == nil {
		return groups
	}
	return out
}

// stillThere drops from ids the collectors that are gone for good: not a
// member, not a leaver, while the source keeps a roster (sick is not nil).
// A gone collector's file is removed; there is nothing to push.
func stillThere(ids []string, members, leavers, sick []watch.Member) []string {
	if sick == nil {
		return ids
	}
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool {
		has := func(m watch.Member) bool { return m.ID == id }
		return !slices.ContainsFunc(members, has) && !slices.ContainsFunc(leavers, has)
	})
}
