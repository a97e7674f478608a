package shard

import (
	"cmp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
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
	groups := map[string][]*targetgroup.Group{}
	pick := func(a *Assignment, keep bool) {
		for id, gs := range a.Groups {
			for _, g := range gs {
				var ts []model.LabelSet
				for _, t := range g.Targets {
					if stay[targetID(g.Source, g.Labels, t)] == keep {
						ts = append(ts, t)
					}
				}
				if len(ts) > 0 {
					groups[id] = append(groups[id], &targetgroup.Group{Source: g.Source, Labels: g.Labels, Targets: ts})
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
			gs = []*targetgroup.Group{}
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
func mergeSameGroups(gs []*targetgroup.Group) []*targetgroup.Group {
	type key struct {
		source string
		labels model.Fingerprint
	}
	byKey := map[key]*targetgroup.Group{}
	var out []*targetgroup.Group
	for _, g := range gs {
		k := key{g.Source, g.Labels.Fingerprint()}
		if have, ok := byKey[k]; ok {
			have.Targets = append(have.Targets, g.Targets...)
			continue
		}
		byKey[k] = g
		out = append(out, g)
	}
	for _, g := range out {
		slices.SortFunc(g.Targets, func(a, b model.LabelSet) int {
			return strings.Compare(string(a[model.AddressLabel]), string(b[model.AddressLabel]))
		})
	}
	slices.SortFunc(out, func(a, b *targetgroup.Group) int {
		return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.Labels.String(), b.Labels.String()))
	})
	if out == nil {
		out = []*targetgroup.Group{}
	}
	return out
}
