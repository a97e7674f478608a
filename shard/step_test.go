package shard

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// Steps from an assignment to the one without some members move at most
// limit targets each, only targets that must move, and end where Assign
// ends; on every ring, seeded.
func TestStepBoundsEachMove(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for round := range 12 {
		kind := Kinds()[round%len(Kinds())]
		ms := members(3 + rng.IntN(8))
		gs := pool(rng, 200+rng.IntN(1300), 1+rng.IntN(300))
		opts := Options{Replicas: 1 + rng.IntN(2)}
		prev := mustAssign(t, mustRing(t, kind, ms), gs, opts)
		gone := ms[rng.IntN(len(ms))].ID
		rest := slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return m.ID == gone })
		next := mustAssign(t, mustRing(t, kind, rest), gs[:len(gs)-1], opts) // a group left meanwhile
		limit := 5 + rng.IntN(60)
		t.Run(fmt.Sprintf("%s/%d-members/limit-%d", kind, len(ms), limit), func(t *testing.T) {
			want := ownersOf(next)
			cur, steps := prev, 0
			for left := -1; left != 0; steps++ {
				if steps > 10_000 {
					t.Fatal("no end")
				}
				var stepped *Assignment
				stepped, left = Step(cur, next, limit)
				d := Compare(cur, stepped)
				if d.Moved > limit {
					t.Fatalf("step %d moved %d targets, limit %d", steps, d.Moved, limit)
				}
				now, was := ownersOf(stepped), ownersOf(cur)
				if len(now) != len(want) {
					t.Fatalf("step %d holds %d targets, want %d", steps, len(now), len(want))
				}
				for id, os := range now {
					if !slices.Equal(os, want[id]) && !slices.Equal(os, was[id]) {
						t.Fatalf("step %d: target on %v, neither where it was (%v) nor where it goes (%v)", steps, os, was[id], want[id])
					}
				}
				cur = stepped
			}
			if got := ownersOf(cur); !maps.EqualFunc(got, want, slices.Equal) {
				t.Fatal("the last step is not the assignment it steps to")
			}
			moves := Compare(prev, next).Moved
			if wantSteps := max(1, (moves+limit-1)/limit); steps != wantSteps {
				t.Fatalf("%d steps for %d moves of at most %d, want %d", steps, moves, limit, wantSteps)
			}
		})
	}
}

func TestStepUnbounded(t *testing.T) {
	gs := pool(rand.New(rand.NewPCG(1, 3)), 500, 50)
	prev := mustAssign(t, mustRing(t, KindRendezvous, members(4)), gs, Options{})
	next := mustAssign(t, mustRing(t, KindRendezvous, members(3)), gs, Options{})
	if got, left := Step(prev, next, -1); got != next || left != 0 {
		t.Fatalf("Step(-1) = %p, %d: want next itself, 0", got, left)
	}
	if got, left := Step(nil, next, 3); got != next || left != 0 {
		t.Fatalf("Step(nil prev) = %p, %d: want next itself, 0", got, left)
	}
	got, left := Step(prev, next, 0)
	if d := Compare(prev, got); d.Changed() || left == 0 {
		t.Fatalf("Step(0) changed %+v, %d left", d, left)
	}
	if len(got.Members) != 4 {
		t.Fatalf("Step(0) has %d members; the leaving one still owns its targets", len(got.Members))
	}
}
