package promshard

import (
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/watch"
)

// splitDrains takes the healthy members that carry Job.DrainTag out of the
// ring, as drained (State maintenance).
func (j *job) splitDrains(ms []watch.Member) (keep, drained []watch.Member) {
	if j.cfg.DrainTag == "" {
		return ms, nil
	}
	for _, m := range ms {
		if slices.Contains(m.Tags, j.cfg.DrainTag) {
			m.State = watch.StateMaintenance
			drained = append(drained, m)
		} else {
			keep = append(keep, m)
		}
	}
	return keep, drained
}

// leavers are the collectors out of the ring that are still registered
// (and so may still run): drained ones and those that fail their check.
// They get an empty list in every output. A collector whose ID an output
// cannot serve is left out, as it is of the ring. Drains that begin are
// logged and counted.
func (j *job) leavers(sick, drained []watch.Member) []watch.Member {
	out := slices.Concat(drained, sick)
	out = slices.DeleteFunc(out, func(m watch.Member) bool {
		for _, o := range j.cfg.Outputs {
			if c, ok := o.(MemberChecker); ok && c.CheckMember(m.ID) != nil {
				return true
			}
		}
		return false
	})
	slices.SortFunc(out, func(a, b watch.Member) int { return strings.Compare(a.ID, b.ID) })
	now := map[string]bool{}
	for _, m := range out {
		if m.State != watch.StateMaintenance {
			continue
		}
		now[m.ID] = true
		if !j.draining[m.ID] {
			j.m.drains.WithLabelValues(j.cfg.Name).Inc()
			j.s.opts.Logger.Info("draining a collector: its targets move as planned, then it gets an empty list",
				"job", j.cfg.Name, "collector", m.ID)
		}
	}
	j.draining = now
	return out
}

// withEmpty gives each leaver that holds nothing an empty list.
func withEmpty(groups map[string][]*targetgroup.Group, leavers []watch.Member) map[string][]*targetgroup.Group {
	var out map[string][]*targetgroup.Group
	for _, m := range leavers {
		if _, ok := groups[m.ID]; ok {
			continue // it still keeps targets being handed over
		}
		if out == nil {
			out = maps.Clone(groups)
		}
		out[m.ID] = []*targetgroup.Group{}
	}
	if out == nil {
		return groups
	}
	return out
}

// stillThere drops from ids the collectors that are gone for good: not a
// member, not a leaver, and not in a roster that knows every registered
// collector (sick is nil when the source keeps none: then nobody is known
// to be gone). A gone collector's file is removed; there is nothing to push.
func (j *job) stillThere(ids []string, members, leavers, sick []watch.Member) []string {
	if sick == nil {
		return ids
	}
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool {
		has := func(m watch.Member) bool { return m.ID == id }
		return !slices.ContainsFunc(members, has) && !slices.ContainsFunc(leavers, has)
	})
}

// registration says whether a collector may still run: yes when it is a
// member or registered but unhealthy, no when the roster knows it is gone,
// unknown when the source keeps no roster.
func (j *job) registration(id string) (known, registered bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	has := func(m watch.Member) bool { return m.ID == id }
	if slices.ContainsFunc(j.members, has) || slices.ContainsFunc(j.sick, has) {
		return true, true
	}
	return j.sick != nil, false
}
