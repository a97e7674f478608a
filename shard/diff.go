package shard

import (
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
)

// MemberDiff counts one member's changes between two assignments.
type MemberDiff struct {
	// Gained is the number of targets the member scrapes now and did not
	// before.
	Gained int
	// Lost is the number of targets the member scraped before and does not
	// now.
	Lost int
}

// Diff is what changed between two assignments.
type Diff struct {
	// Added counts targets that are new in the pool.
	Added int
	// Removed counts targets that left the pool.
	Removed int
	// Moved counts targets present in both whose set of members changed.
	Moved int
	// Unchanged counts targets present in both with the same members.
	Unchanged int
	// Members holds the members with changes, by ID.
	Members map[string]MemberDiff
}

// Changed reports whether anything moved, appeared or disappeared.
func (d Diff) Changed() bool { return d.Added+d.Removed+d.Moved > 0 }

// Compare reports what changed from prev to next. A nil prev counts every
// target of next as added. A target is identified by its group's source and
// labels and its address (targets of a group with the same address count
// once). Assignments made by [Assign] are compared in one linear pass over
// the owners Assign recorded; others (built by hand) through a map of every
// target.
func Compare(prev, next *Assignment) Diff {
	if next != nil && next.table.groups != nil && (prev == nil || prev.table.groups != nil) {
		return compareTables(prev, next)
	}
	d := Diff{Members: map[string]MemberDiff{}}
	before := placements(prev)
	after := placements(next)
	for id, now := range after {
		was, ok := before[id]
		if !ok {
			d.Added++
		} else if slices.Equal(was, now) {
			d.Unchanged++
		} else {
			d.Moved++
		}
		for _, m := range now {
			if !slices.Contains(was, m) {
				md := d.Members[m]
				md.Gained++
				d.Members[m] = md
			}
		}
	}
	for id, was := range before {
		now, ok := after[id]
		if !ok {
			d.Removed++
		}
		for _, m := range was {
			if !slices.Contains(now, m) {
				md := d.Members[m]
				md.Lost++
				d.Members[m] = md
			}
		}
	}
	return d
}

// placements maps each target's identity to its sorted member IDs.
func placements(a *Assignment) map[uint64][]string {
	out := map[uint64][]string{}
	if a == nil {
		return out
	}
	for _, m := range a.Members {
		for _, g := range a.Groups[m.ID] {
			for _, addr := range g.Targets {
				id := targetID(g.Source, g.Labels, addr)
				if !slices.Contains(out[id], m.ID) {
					out[id] = append(out[id], m.ID)
				}
			}
		}
	}
	for _, ms := range out {
		slices.Sort(ms)
	}
	return out
}

// targetID is the identity [Compare] uses for the target at addr of a
// group with the given source and labels.
func targetID(source string, groupLabels model.LabelSet, addr string) uint64 {
	gid := xxhash.Sum64String(source) ^ uint64(groupLabels.Fingerprint())*31
	return mix(gid ^ Hash(addr))
}
