package watch

import (
	"maps"
	"slices"
	"time"
)

// Damper damps flapping for a member source, as [ConsulWatcher] does: a
// member that was reported stays while it passes and leaves at once when
// it does not; a member that joins, or comes back, is reported only once it
// has passed for the settle time without a break, so that a flapping member
// never joins and one that is down half the time never looks healthy. The
// first set is reported as it is. A Damper is used by one goroutine.
type Damper struct {
	settle   time.Duration
	since    map[string]time.Time // the start of each passing member's unbroken run
	started  bool
	reported []Member
	sick     []Member
}

// NewDamper returns a Damper with a settle time; zero or less turns the
// damping off.
func NewDamper(settle time.Duration) *Damper {
	return &Damper{settle: settle, since: map[string]time.Time{}}
}

// Damp takes what a source sees at now: the passing members and the
// failing ones (each with its State), both sorted by ID. It returns the
// member set to report, the unhealthy members to keep in the roster (the
// failing ones, and with [StateSettling] those that failed before and pass
// now but not yet for the settle time), when the next pending member may
// join (zero when none is pending), and whether either differs from what
// the last call returned (always true on the first call).
func (d *Damper) Damp(passing, failing []Member, now time.Time) (set, unhealthy []Member, next time.Time, changed bool) {
	seen := make(map[string]bool, len(passing))
	for _, m := range passing {
		seen[m.ID] = true
		if _, ok := d.since[m.ID]; !ok {
			d.since[m.ID] = now
		}
	}
	maps.DeleteFunc(d.since, func(id string, _ time.Time) bool { return !seen[id] })
	set = passing
	if d.started && d.settle > 0 {
		set = make([]Member, 0, len(passing))
		for _, m := range passing {
			at := d.since[m.ID].Add(d.settle)
			switch {
			case !now.Before(at) || slices.ContainsFunc(d.reported, func(r Member) bool { return r.ID == m.ID }):
				set = append(set, m)
			case next.IsZero() || at.Before(next):
				next = at
			}
		}
	}
	unhealthy = slices.Clone(failing)
	for _, m := range passing { // failing before, passing now but not yet for the settle time: still out of the ring, not gone
		if !slices.ContainsFunc(set, func(s Member) bool { return s.ID == m.ID }) &&
			slices.ContainsFunc(d.sick, func(s Member) bool { return s.ID == m.ID }) {
			m.State = StateSettling
			unhealthy = append(unhealthy, m)
		}
	}
	unhealthy = sortMembers(unhealthy)
	changed = !d.started || !sameMembers(set, d.reported) || !sameSick(unhealthy, d.sick)
	if changed {
		d.started, d.reported, d.sick = true, set, unhealthy
	}
	return set, unhealthy, next, changed
}
