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
			switch rng.IntN(40) {
			case 0:
				t["every"] = "1"
			case 1, 2:
				t["pin"] = model.LabelValue(fmt.Sprintf("collector-%03d:9090", rng.IntN(14)))
			case 3:
				t["pin"] = model.LabelValue(fmt.Sprintf("collector-%03d:9090", rng.IntN(14)))
				t["strict"] = "1"
			case 4, 5:
				t["reps"] = model.LabelValue(fmt.Sprint(1 + rng.IntN(4)))
			}
		}
	}
	return gs
}

// placeByLabels is the Placement of placedPool's targets.
func placeByLabels(g *targetgroup.Group, i int) Placement {
	t := g.Targets[i]
	p := Placement{Drop: t["drop"] == "1", Key: string(t["alias"]), Zone: string(t["want_zone"]),
		Every: t["every"] == "1", Pin: string(t["pin"]), PinStrict: t["strict"] == "1"}
	fmt.Sscan(string(t["reps"]), &p.Replicas)
	return p
}

// Seeded properties of Placement on every ring, over random fleets of one
// to four zones and R of 1 to 3: a dropped target is never placed nor
// counted; targets with one key share their owners; a target that prefers
// a zone with a member has a replica there, and the rest spread as without
// preference; a target for every member is on every member, a pinned one
// on its member (or, pinned strictly to one that is absent, nowhere and
// listed as unplaced), one with replicas of its own on that many; the
// result does not depend on the input's order; and a member that leaves
// moves only the replicas it held.
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
				placed := byAddress(a)
				ids := map[string]bool{}
				for _, m := range ms {
					ids[m.ID] = true
				}
				for addr, tg := range info {
					p := placeByLabels(&targetgroup.Group{Targets: []model.LabelSet{tg}}, 0)
					if p.Pin != "" && p.PinStrict && !ids[p.Pin] && tg["drop"] != "1" {
						if len(placed[addr]) > 0 || !slices.Contains(a.Unplaced, addr) {
							t.Fatalf("%s R=%d: %s pinned (strictly) to %s, absent, is on %v (unplaced: %v)", k, reps, addr, p.Pin, placed[addr], slices.Contains(a.Unplaced, addr))
						}
					}
				}
				for addr, ids := range placed {
					tg := info[addr]
					p := placeByLabels(&targetgroup.Group{Targets: []model.LabelSet{tg}}, 0)
					if tg["drop"] == "1" {
						t.Fatalf("%s R=%d: dropped %s placed on %v", k, reps, addr, ids)
					}
					want, wantDomains := min(reps, len(ms)), min(reps, d)
					switch {
					case p.Every:
						want, wantDomains = len(ms), d
					case p.Pin != "" && slices.ContainsFunc(ms, func(m Member) bool { return m.ID == p.Pin }):
						want, wantDomains = 1, 1
					case p.Replicas > 0:
						want = min(p.Replicas, len(ms))
						wantDomains = min(want, d)
					}
					if len(ids) != want {
						t.Fatalf("%s R=%d: %s (%+v) has %d owners, want %d", k, reps, addr, p, len(ids), want)
					}
					if p.Pin != "" && slices.ContainsFunc(ms, func(m Member) bool { return m.ID == p.Pin }) && !slices.Contains(ids, p.Pin) {
						t.Fatalf("%s R=%d: %s pinned to %s is on %v", k, reps, addr, p.Pin, ids)
					}
					if alias := string(tg["alias"]); alias != "" {
						key := fmt.Sprintf("%s/%+v", alias, p)
						if prev, ok := byKey[key]; ok && !slices.Equal(prev, ids) {
							t.Fatalf("%s R=%d: key %s owned by %v and by %v", k, reps, alias, prev, ids)
						}
						byKey[key] = ids
					}
					seen := map[string]bool{}
					for _, id := range ids {
						seen[dom[id]] = true
					}
					if len(seen) != wantDomains {
						t.Fatalf("%s R=%d: %s (%+v) owned by %v in %d domains, want %d", k, reps, addr, p, ids, len(seen), wantDomains)
					}
					want2 := string(tg["want_zone"])
					if !zones[want2] || p.Every || p.Pin != "" {
						continue
					}
					if !slices.ContainsFunc(ids, func(id string) bool { return dom[id] == want2 }) {
						t.Fatalf("%s R=%d: %s prefers %s (which has members) but is owned by %v", k, reps, addr, want2, ids)
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
					now := byAddress(after)
					for addr, ids := range byAddress(a) {
						for _, id := range ids {
							if id != gone.ID && !slices.Contains(now[addr], id) {
								t.Logf("%s %+v: %v -> %v", addr, placeByLabels(&targetgroup.Group{Targets: []model.LabelSet{info[addr]}}, 0), ids, now[addr])
							}
						}
					}
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

// Isolated targets (Placement.Isolate, or a cost above the threshold) get
// a member of their own on every ring: no other target is placed there;
// with more of them than members to spare, they share where it hurts
// least and are reported; a member that holds none and leaves moves only
// its own targets.
func TestIsolation(t *testing.T) {
	rng := rand.New(rand.NewPCG(30, 2))
	gs := pool(rng, 2000, 100)
	heavy := map[string]bool{}
	for _, g := range gs[:3] {
		heavy[string(g.Targets[7][model.AddressLabel])] = true
	}
	isolate := func(g *targetgroup.Group, i int) Placement {
		return Placement{Isolate: heavy[string(g.Targets[i][model.AddressLabel])]}
	}
	for _, k := range Kinds() {
		for _, reps := range []int{1, 2} {
			ms := zoned(rng, 8, 2, false)
			a := mustAssign(t, mustRing(t, k, ms), gs, Options{Replicas: reps, Placement: isolate})
			if len(a.Isolated) != 3 || len(a.Crowded) != 0 {
				t.Fatalf("%s R=%d: isolated %v, crowded %v", k, reps, a.Isolated, a.Crowded)
			}
			owners := byAddress(a)
			alone := map[string]bool{}
			for addr := range heavy {
				if len(owners[addr]) != 1 {
					t.Fatalf("%s R=%d: isolated %s on %v", k, reps, addr, owners[addr])
				}
				if a.Count(owners[addr][0]) != 1 {
					t.Fatalf("%s R=%d: isolated %s shares %s with %d others", k, reps, addr, owners[addr][0], a.Count(owners[addr][0])-1)
				}
				alone[owners[addr][0]] = true
			}
			for addr, ids := range owners {
				if !heavy[addr] && len(ids) != reps {
					t.Fatalf("%s R=%d: %s on %v", k, reps, addr, ids)
				}
			}
			var gone Member
			for _, m := range ms {
				if !alone[m.ID] {
					gone = m
					break
				}
			}
			rest := slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return m.ID == gone.ID })
			after := mustAssign(t, mustRing(t, k, rest), gs, Options{Replicas: reps, Placement: isolate})
			if lost, needless := movement(a, after); needless != 0 || lost != a.Count(gone.ID) {
				t.Fatalf("%s R=%d: %s left: %d lost (it had %d), %d moved needlessly", k, reps, gone.ID, lost, a.Count(gone.ID), needless)
			}
			// Three members, three heavy targets: two get one each, the third shares.
			few := mustAssign(t, mustRing(t, k, ms[:3]), gs, Options{Replicas: reps, Placement: isolate})
			if len(few.Isolated) != 1 || len(few.Crowded) != 2 {
				t.Fatalf("%s R=%d, 3 members: isolated %v, crowded %v", k, reps, few.Isolated, few.Crowded)
			}
		}
	}
	// By cost: a target above every capacity is isolated rather than left
	// out, and one above IsolateAbove too.
	costs := map[string]uint64{}
	for _, g := range gs {
		for _, tg := range g.Targets {
			costs[string(tg[model.AddressLabel])] = 10
		}
	}
	big := string(gs[5].Targets[3][model.AddressLabel])
	costs[big] = 50_000
	ms := members(5)
	capacity := map[string]uint64{}
	for _, m := range ms {
		capacity[m.ID] = 10_000
	}
	a := mustAssign(t, mustRing(t, KindRendezvous, ms), gs, Options{Costs: CostTable(costs), Capacity: capacity, Overcommit: true})
	if !slices.Equal(a.Isolated, []string{big}) || slices.Contains(a.Unplaced, big) {
		t.Fatalf("isolated %v, unplaced %v", a.Isolated, a.Unplaced)
	}
	if id := byAddress(a)[big]; len(id) != 1 || a.Count(id[0]) != 1 || a.Cost[id[0]] != 50_000 {
		t.Fatalf("%s on %v (cost %v)", big, id, a.Cost)
	}
	a = mustAssign(t, mustRing(t, KindRendezvous, ms), gs, Options{Costs: CostTable(costs), IsolateAbove: 40_000})
	if !slices.Equal(a.Isolated, []string{big}) {
		t.Fatalf("IsolateAbove: isolated %v", a.Isolated)
	}
}
