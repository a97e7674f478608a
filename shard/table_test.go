package shard

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// The linear Compare over Assign's owner tables gives exactly the Diff of
// the map over every target: members leaving and joining, targets added and
// removed, groups appearing, duplicates, a key label, R = 1 to 3.
func TestCompareTablesMatchesMaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	mutate := func(gs []*targetgroup.Group) []*targetgroup.Group {
		var out []*targetgroup.Group
		for _, g := range gs {
			if rng.IntN(10) == 0 {
				continue // a group that left
			}
			ng := &targetgroup.Group{Source: g.Source, Labels: g.Labels}
			for _, tg := range g.Targets {
				if rng.IntN(20) != 0 {
					ng.Targets = append(ng.Targets, tg)
				}
			}
			ng.Targets = append(ng.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("new-%d:80", rng.IntN(1000)))})
			out = append(out, ng)
		}
		return append(out, &targetgroup.Group{Source: "fresh", Targets: []model.LabelSet{{model.AddressLabel: "fresh:1"}}})
	}
	for round := range 40 {
		reps := 1 + round%3
		opts := Options{Replicas: reps}
		if round%4 == 0 {
			opts.KeyLabel = "rack"
		}
		gs := pool(rng, 2000, 150)
		gs = append(gs, gs[0]) // a group twice: its targets twice
		ms := members(3 + rng.IntN(6))
		i := rng.IntN(len(ms))
		next := slices.Delete(slices.Clone(ms), i, i+1)
		next = append(next, Member{ID: fmt.Sprintf("joined-%d", round)})
		kind := Kinds()[round%len(Kinds())]
		before := mustAssign(t, mustRing(t, kind, ms), gs, opts)
		after := mustAssign(t, mustRing(t, kind, next), mutate(gs), opts)
		got := Compare(before, after)
		b, a := *before, *after
		b.table, a.table = ownerTable{}, ownerTable{}
		want := Compare(&b, &a)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d (R=%d, key %q): tables %+v, maps %+v", round, reps, opts.KeyLabel, got, want)
		}
		if got, want := Compare(nil, after), Compare(nil, &a); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d from nil: tables %+v, maps %+v", round, got, want)
		}
	}
}
