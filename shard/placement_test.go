package shard

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// placedPool is a pool whose targets say how Placement treats them: drop
// "1" drops one, alias names the key it is placed by (several targets
// share an alias, as targets do that relabel into one), and want_zone the
// zone its first replica prefers (some zones have no member).
func placedPool(rng *rand.Rand, n, per, zones int) []*targetgroup.Group {
	gs := pool(rng, n, per)
	for _, g := range gs {
		for _, t := range g.Targets {
			if rng.IntN(4) == 0 {
				t["drop"] = "1"
			}
			if rng.IntN(5) == 0 {
				t["alias"] = model.LabelValue(fmt.Sprintf("alias-%d", rng.IntN(n/20+1)))
			}
			if rng.IntN(3) > 0 {
				t["want_zone"] = model.LabelValue(fmt.Sprintf("zone-%c", 'a'+rng.IntN(zones+1)))
			}
		}
	}
	return gs
}

// placeByLabels is the Placement of placedPool's targets.
func placeByLabels(g *targetgroup.Group, i int) Placement {
	t := g.Targets[i]
	return Placement{Drop: t["drop"] == "1", Key: string(t["alias"]), Zone: string(t["want_zone"])}
}

// Seeded properties of Placement on every ring, over random fleets of one
// to four zones and R of 1 to 3: a dropped target is never placed nor
// counted; targets with one key share their owners; a target that prefers
// a zone with a member has its first replica there, and the rest spread
// as without preference; the result does not depend on the input's order;
// and a member that leaves moves only the replicas it held.
func TestPlacementProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(30, 1))
	trials := 12
	if testing.Short() {
		trials = 3
	}
	for trial := range trials {
		d := 1 + rng.IntN(4)
		ms := zoned(rng, d+rng.IntN(10), d, trial%2 == 1)
		gs := placedPool(rng, 3000, 150, d)
		dom := domainOf(ms)
		zones := map[string]bool{}
		for _, m := range ms {
			zones[m.Domain] = true
		}
		for _, k := range Kinds() {
			for _, reps := range []int{1, 2, 3} {
				opts := Options{Replicas: reps, Placement: placeByLabels}
				r := mustRing(t, k, ms)
				a := mustAssign(t, r, gs, opts)
				wantCount := 0
				info := map[string]model.LabelSet{}
				for _, g := range gs {
					for _, tg := range g.Targets {
						if tg["drop"] != "1" {
							wantCount++
						}
						info[string(tg[model.AddressLabel])] = tg
					}
				}
				if a.Targets != wantCount {
					t.Fatalf("%s R=%d: %d targets counted, want %d (the dropped left out)", k, reps, a.Targets, wantCount)
				}
				byKey := map[string][]string{}
				for addr, ids := range byAddress(a) {
					tg := info[addr]
					if tg["drop"] == "1" {
						t.Fatalf("%s R=%d: dropped %s placed on %v", k, reps, addr, ids)
					}
					if len(ids) != min(reps, len(ms)) {
						t.Fatalf("%s R=%d: %s has %d owners", k, reps, addr, len(ids))
					}
					if alias := string(tg["alias"]); alias != "" {
						if prev, ok := byKey[alias+"/"+string(tg["want_zone"])]; ok && !slices.Equal(prev, ids) {
							t.Fatalf("%s R=%d: key %s owned by %v and by %v", k, reps, alias, prev, ids)
						}
						byKey[alias+"/"+string(tg["want_zone"])] = ids
					}
					want := string(tg["want_zone"])
					if !zones[want] {
						continue
					}
					in := 0
					seen := map[string]bool{}
					for _, id := range ids {
						seen[dom[id]] = true
						if dom[id] == want {
							in++
						}
					}
					if in == 0 {
						t.Fatalf("%s R=%d: %s prefers %s (which has members) but is owned by %v", k, reps, addr, want, ids)
					}
					if len(seen) != min(reps, d) {
						t.Fatalf("%s R=%d: %s owned by %v in %d domains, want %d", k, reps, addr, ids, len(seen), min(reps, d))
					}
				}
				shuffled := slices.Clone(gs)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				if b := mustAssign(t, r, shuffled, opts); dump(b) != dump(a) {
					t.Fatalf("%s R=%d: the result depends on the input's order", k, reps)
				}
				gone := ms[rng.IntN(len(ms))]
				rest := slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return m.ID == gone.ID })
				if len(rest) == 0 {
					continue
				}
				after := mustAssign(t, mustRing(t, k, rest), gs, opts)
				if lost, needless := movement(a, after); needless != 0 || lost != a.Count(gone.ID) {
					t.Fatalf("%s R=%d: %s left: %d replicas lost (it had %d), %d moved needlessly", k, reps, gone.ID, lost, a.Count(gone.ID), needless)
				}
			}
		}
	}
}

// Balanced by cost, a target that prefers a zone goes to a member there
// with room, and elsewhere only when none has any.
func TestPlacementZoneWithCapacity(t *testing.T) {
	ms := []Member{{ID: "a1", Domain: "a"}, {ID: "a2", Domain: "a"}, {ID: "b1", Domain: "b"}, {ID: "b2", Domain: "b"}}
	var g targetgroup.Group
	costs := map[string]uint64{}
	for i := range 40 {
		addr := fmt.Sprintf("10.0.0.%d:9100", i)
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(addr), "want_zone": "a"})
		costs[addr] = 10
	}
	for _, k := range Kinds() {
		r := mustRing(t, k, ms)
		a := mustAssign(t, r, []*targetgroup.Group{&g}, Options{Placement: placeByLabels, Costs: CostTable(costs), Epsilon: 4, // room is the capacity
			Capacity: map[string]uint64{"a1": 150, "a2": 150, "b1": 1000, "b2": 1000}})
		if a.Cost["a1"] > 150 || a.Cost["a2"] > 150 {
			t.Fatalf("%s: zone a above its capacity: %v", k, a.Cost)
		}
		if got := a.Count("a1") + a.Count("a2"); got != 30 {
			t.Fatalf("%s: %d of 40 targets in their zone, want 30 (all the room there): %v", k, got, a.Cost)
		}
	}
}

// Explain tells a dropped target, a key, and a zone preference.
func TestExplainPlacement(t *testing.T) {
	ms := []Member{{ID: "a1", Domain: "a"}, {ID: "b1", Domain: "b"}, {ID: "b2", Domain: "b"}}
	g := &targetgroup.Group{Targets: []model.LabelSet{{model.AddressLabel: "h1:9100", "want_zone": "a", "alias": "h"}}}
	r := mustRing(t, KindRendezvous, ms)
	a := mustAssign(t, r, []*targetgroup.Group{g}, Options{Replicas: 2, Placement: placeByLabels})
	e := ExplainPlacement(r, a, "h1:9100", "", placeByLabels(g, 0), "relabel_configs[0] rewrote __address__ to h")
	if e.Key != "h" || e.PreferZone != "a" || len(e.Owners) != 2 || e.Owners[0] != "a1" || !slices.Equal(e.Members, byAddress(a)["h1:9100"]) {
		t.Fatalf("explanation %+v", e)
	}
	e = ExplainPlacement(r, a, "h1:9100", "", Placement{Drop: true}, "relabel_configs[1] (drop) dropped it")
	if !e.Dropped || len(e.Owners) != 0 || e.Placement == "" {
		t.Fatalf("explanation of a dropped target %+v", e)
	}
}
