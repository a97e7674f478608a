package shard

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// realMoves derives the per-pair moves, and each member's counts, from two
// real assignments, pairing each target's lost and gained members in ID
// order as Simulate does.
func realMoves(before, after *Assignment) (map[[2]string]int, map[string][2]int) {
	pb, pa := placements(before), placements(after)
	moves := map[[2]string]int{}
	for id, was := range pb {
		now := pa[id]
		var lost, gained []string
		for _, m := range was {
			if !slices.Contains(now, m) {
				lost = append(lost, m)
			}
		}
		for _, m := range now {
			if !slices.Contains(was, m) {
				gained = append(gained, m)
			}
		}
		for i := range max(len(lost), len(gained)) {
			var k [2]string
			if i < len(lost) {
				k[0] = lost[i]
			}
			if i < len(gained) {
				k[1] = gained[i]
			}
			moves[k]++
		}
	}
	counts := map[string][2]int{}
	for _, m := range before.Members {
		c := counts[m.ID]
		c[0] = before.Count(m.ID)
		counts[m.ID] = c
	}
	for _, m := range after.Members {
		c := counts[m.ID]
		c[1] = after.Count(m.ID)
		counts[m.ID] = c
	}
	return moves, counts
}

// Simulate's moves and counts are those of two real assignments, for
// removals, additions and weight changes, on every ring, with and without
// domains, R = 1 to 3.
func TestSimulateMatchesAssign(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	plain, placed := pool(rng, 3000, 100), placedPool(rng, 3000, 100, 3)
	for _, kind := range Kinds() {
		for _, reps := range []int{1, 2, 3} {
			for _, zones := range []int{1, 3} {
				ms := members(8)
				for i := range ms {
					ms[i].Domain = fmt.Sprintf("zone-%c", 'a'+i%zones)
				}
				for x, c := range []Change{
					{Remove: []string{ms[2].ID}},
					{Remove: []string{ms[0].ID, ms[5].ID}},
					{Add: []Member{{ID: "new-1:9090", Domain: "zone-a"}, {ID: "new-2:9090", Weight: 3}}},
					{Weight: map[string]uint32{ms[3].ID: 4}},
					{Remove: []string{ms[1].ID}, Add: []Member{{ID: "new-3:9090"}}},
				} {
					name := fmt.Sprintf("%s/R%d/zones%d/%+v", kind, reps, zones, c)
					opts, gs := Options{Replicas: reps}, plain
					switch x % 3 {
					case 1: // with placement: drops, keys, zones, overrides
						opts.Placement, gs, name = placeByLabels, placed, name+"/placed"
					case 2: // three isolated targets
						heavy := []model.LabelValue{plain[0].Targets[1][model.AddressLabel], plain[4].Targets[2][model.AddressLabel], plain[9].Targets[3][model.AddressLabel]}
						opts.Placement = func(g *targetgroup.Group, i int) Placement {
							return Placement{Isolate: slices.Contains(heavy, g.Targets[i][model.AddressLabel])}
						}
						name += "/isolated"
					}
					sim, err := Simulate(context.Background(), kind, ms, gs, opts, c, 0)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					next, _ := c.Apply(ms)
					before := mustAssign(t, mustRing(t, kind, ms), gs, opts)
					after := mustAssign(t, mustRing(t, kind, next), gs, opts)
					want, counts := realMoves(before, after)
					got := map[[2]string]int{}
					for _, m := range sim.Moves {
						got[[2]string{m.From, m.To}] = m.Targets
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("%s: simulated moves %v, real %v", name, got, want)
					}
					if d := Compare(before, after); d.Moved != sim.Moved {
						t.Fatalf("%s: simulated %d moved, real %d", name, sim.Moved, d.Moved)
					}
					for _, l := range sim.Loads {
						if c := counts[l.ID]; c != [2]int{l.Before, l.After} {
							t.Fatalf("%s: %s simulated %d → %d, real %v", name, l.ID, l.Before, l.After, c)
						}
					}
				}
			}
		}
	}
}

func TestSimulateCapacityAndErrors(t *testing.T) {
	ms := members(4)
	gs := pool(rand.New(rand.NewPCG(1, 2)), 400, 50)
	sim, err := Simulate(context.Background(), KindRendezvous, ms, gs, Options{}, Change{Remove: []string{ms[0].ID}}, 120)
	if err != nil {
		t.Fatal(err)
	}
	over := 0
	for _, l := range sim.Loads {
		over += max(0, l.After-120)
	}
	if over == 0 || sim.Unplaced != over || sim.After.Members != 3 || sim.Before.Members != 4 || sim.Targets != 400 {
		t.Fatalf("capacity 120 of 400 targets over 3 members: unplaced %d (want %d > 0), %+v", sim.Unplaced, over, sim)
	}
	if sim.After.MaxOverMean() < 1 || sim.Before.Mean != 100 {
		t.Fatalf("balance: %+v %+v", sim.Before, sim.After)
	}
	for _, tc := range []struct {
		c    Change
		want string
	}{
		{Change{Remove: []string{"nope"}}, `remove "nope": no such member`},
		{Change{Add: []Member{ms[1]}}, `add "collector-001:9090": empty or already a member`},
		{Change{Weight: map[string]uint32{"nope": 2}}, `weight "nope": no such member`},
		{Change{Remove: []string{ms[0].ID, ms[1].ID, ms[2].ID, ms[3].ID}}, "no members"},
	} {
		if _, err := Simulate(context.Background(), KindRendezvous, ms, gs, Options{}, tc.c, 0); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}
