package shard

import (
	"cmp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"

	"github.com/promshard/promshard/internal/tstore"
)

// Step is the way from prev to next in bounded steps: an assignment equal
// to next, except that of the targets whose owners differ between the two
// (the moves), only the first limit, in the order of their identity hash,
// take next's owners; the others keep prev's. It also returns how many
// moves are left after this step. Targets new in next are placed as next
// places them and targets gone from next are gone: neither is a move. A
// negative limit takes every move (the result is next itself).
//
// Calling Step again with its own result as prev takes the next limit
// moves, in the same order, so that a sequence of steps reaches next after
// ceil(moves/limit) of them. The members of the result are next's and those
// of prev's that still own a target; Cost and the table that makes
// [Compare] linear are not kept (Compare still works, through a map).
func Step(prev, next *Assignment, limit int) (stepped *Assignment, left int) {
	if prev == nil || next == nil || limit < 0 {
		return next, 0
	}
	before, after := placements(prev), placements(next)
	var moves []uint64
	for id, now := range after {
		if was, ok := before[id]; ok && !slices.Equal(was, now) {
			moves = append(moves, id)
		}
	}
	if len(moves) <= limit {
		return next, 0
	}
	slices.Sort(moves)
	stay := make(map[uint64]bool, len(moves)-limit)
	for _, id := range moves[limit:] {
		stay[id] = true
	}
	groups := map[string][]*tstore.Group{}
	pick := func(a *Assignment, keep bool) {
		var idx []int
		for id, gs := range a.Groups {
			for _, g := range gs {
				idx = idx[:0]
				for i, addr := range g.Targets {
					if stay[targetID(g.Source, g.Labels, addr)] == keep {
						idx = append(idx, i)
					}
				}
				if len(idx) > 0 {
					groups[id] = append(groups[id], g.With(idx))
				}
			}
		}
	}
	pick(next, false)
	pick(prev, true)
	members := slices.Clone(next.Members)
	for _, m := range prev.Members {
		if _, owns := groups[m.ID]; owns && !slices.ContainsFunc(members, func(n Member) bool { return n.ID == m.ID }) {
			members = append(members, m)
		}
	}
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	for _, m := range members {
		gs := groups[m.ID]
		if gs == nil {
			gs = []*tstore.Group{}
		}
		groups[m.ID] = mergeSameGroups(gs)
	}
	out := &Assignment{Ring: next.Ring, Members: members, RequestedReplicas: next.RequestedReplicas,
		Replicas: next.Replicas, Domains: next.Domains, Targets: next.Targets, Groups: groups,
		Unplaced: next.Unplaced}
	return out, len(moves) - limit
}

// mergeSameGroups joins groups of one source and labels (Step's two halves
// of a member's list), sorted by source and labels as Assign sorts them.
func mergeSameGroups(gs []*tstore.Group) []*tstore.Group {
	type key struct {
		source string
		labels model.Fingerprint
	}
	byKey := map[key][]*tstore.Group{}
	var keys []key
	for _, g := range gs {
		k := key{g.Source, g.Labels.Fingerprint()}
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], g)
	}
	out := make([]*tstore.Group, 0, len(keys))
	for _, k := range keys {
		parts := byKey[k]
		type ref struct{ part, i int }
		var refs []ref
		for p, g := range parts {
			for i := range g.Targets {
				refs = append(refs, ref{p, i})
			}
		}
		slices.SortStableFunc(refs, func(a, b ref) int {
			return strings.Compare(parts[a.part].Targets[a.i], parts[b.part].Targets[b.i])
		})
		g := &tstore.Group{Source: parts[0].Source, Labels: parts[0].Labels, Targets: make([]string, 0, len(refs))}
		for _, r := range refs {
			g.Append(parts[r.part], r.i)
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *tstore.Group) int {
		return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.Labels.String(), b.Labels.String()))
	})
	return out
}
