package shard

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// zoned gives n members random domains out of d (each domain gets at least
// one member when n ≥ d) and, when weighted, random weights.
func zoned(rng *rand.Rand, n, d int, weighted bool) []Member {
	ms := members(n)
	for i := range ms {
		z := i % d
		if i >= d {
			z = rng.IntN(d)
		}
		ms[i].Domain = fmt.Sprintf("zone-%c", 'a'+z)
		if weighted {
			ms[i].Weight = uint32(1 + rng.IntN(3))
		}
	}
	return ms
}

// wantOwners is the rule written the slow way: walk the whole preference
// order, take a member unless its domain holds a replica, then fill up.
func wantOwners(r Ring, key uint64, reps int) []string {
	ms := r.Members()
	order := r.Owners(key, len(ms), nil)
	domains := map[string]bool{}
	for _, m := range ms {
		domains[m.Domain] = true
	}
	held := map[string]bool{}
	var out []string
	for _, i := range order {
		if len(out) < min(reps, len(domains)) && !held[ms[i].Domain] {
			held[ms[i].Domain] = true
			out = append(out, ms[i].ID)
		}
	}
	for _, i := range order {
		if len(out) < reps && !slices.Contains(out, ms[i].ID) {
			out = append(out, ms[i].ID)
		}
	}
	slices.Sort(out)
	return out
}

// byAddress maps each target's address to its owners, sorted.
func byAddress(a *Assignment) map[string][]string {
	out := map[string][]string{}
	for _, m := range a.Members {
		for _, g := range a.GroupsOf(m.ID) {
			for _, t := range g.Targets {
				out[string(t["__address__"])] = append(out[string(t["__address__"])], m.ID)
			}
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

func domainOf(ms []Member) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		out[m.ID] = m.Domain
	}
	return out
}

// Replicas never share a domain while another domain can take one, and the
// owners are exactly those the rule picks from the whole preference order,
// on every ring, for random fleets over 1–5 domains.
func TestSpreadProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 1))
	gs := pool(rng, 2000, 100)
	trials := 40
	if testing.Short() {
		trials = 8
	}
	for trial := range trials {
		d := 1 + rng.IntN(5)
		n := d + rng.IntN(12)
		ms := zoned(rng, n, d, trial%2 == 1)
		for _, k := range Kinds() {
			for _, reps := range []int{2, 3} {
				r := mustRing(t, k, ms)
				a := mustAssign(t, r, gs, Options{Replicas: reps})
				if a.Domains != d {
					t.Fatalf("Domains = %d, want %d", a.Domains, d)
				}
				dom := domainOf(ms)
				for addr, ids := range byAddress(a) {
					seen := map[string]bool{}
					for _, id := range ids {
						seen[dom[id]] = true
					}
					if len(ids) != min(reps, n) || len(seen) != min(reps, d) {
						t.Fatalf("%s N=%d D=%d R=%d: %s owned by %v in %d domains", k, n, d, reps, addr, ids, len(seen))
					}
					if want := wantOwners(r, Hash(addr), reps); !slices.Equal(ids, want) {
						t.Fatalf("%s N=%d D=%d R=%d: %s owned by %v, the rule says %v", k, n, d, reps, addr, ids, want)
					}
				}
			}
		}
	}
}

// With one domain, or none, the assignment is exactly the ring's own.
func TestSpreadOneDomainIsUnspread(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 2))
	gs := pool(rng, 3000, 300)
	for _, k := range Kinds() {
		plain := members(12)
		one := members(12)
		for i := range one {
			one[i].Domain = "zone-a"
		}
		for _, reps := range []int{1, 2, 3} {
			a := mustAssign(t, mustRing(t, k, plain), gs, Options{Replicas: reps})
			b := mustAssign(t, mustRing(t, k, one), gs, Options{Replicas: reps})
			if dump(a) != dump(b) {
				t.Fatalf("%s R=%d: one domain differs from none", k, reps)
			}
		}
	}
}

// The result does not depend on the order of members or groups.
func TestSpreadDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 3))
	gs := pool(rng, 2000, 50)
	ms := zoned(rng, 15, 3, true)
	want := dump(mustAssign(t, mustRing(t, KindRendezvous, ms), gs, Options{Replicas: 2}))
	for range 5 {
		ms2, gs2 := slices.Clone(ms), slices.Clone(gs)
		rng.Shuffle(len(ms2), func(i, j int) { ms2[i], ms2[j] = ms2[j], ms2[i] })
		rng.Shuffle(len(gs2), func(i, j int) { gs2[i], gs2[j] = gs2[j], gs2[i] })
		if got := dump(mustAssign(t, mustRing(t, KindRendezvous, ms2), gs2, Options{Replicas: 2})); got != want {
			t.Fatal("the assignment depends on input order")
		}
	}
}

// movement compares two assignments: replicas that moved away from members
// that stayed, and replicas lost with members that left.
func movement(before, after *Assignment) (lost, needless int) {
	stay := map[string]bool{}
	for _, m := range after.Members {
		stay[m.ID] = true
	}
	now := byAddress(after)
	for addr, ids := range byAddress(before) {
		for _, id := range ids {
			switch {
			case !stay[id]:
				lost++
			case !slices.Contains(now[addr], id):
				needless++
			}
		}
	}
	return lost, needless
}

// A member that leaves moves only its own replicas; a whole domain that
// leaves moves only that domain's, each to another domain while one is
// free.
func TestSpreadMinimalMovement(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 4))
	gs := pool(rng, 5000, 250)
	trials := 10
	if testing.Short() {
		trials = 3
	}
	for trial := range trials {
		d := 2 + rng.IntN(4)
		ms := zoned(rng, d+3+rng.IntN(10), d, trial%2 == 0)
		for _, k := range Kinds() {
			for _, reps := range []int{2, 3} {
				before := mustAssign(t, mustRing(t, k, ms), gs, Options{Replicas: reps})
				gone := ms[rng.IntN(len(ms))]
				rest := slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return m.ID == gone.ID })
				after := mustAssign(t, mustRing(t, k, rest), gs, Options{Replicas: reps})
				if lost, needless := movement(before, after); needless != 0 || lost != before.Count(gone.ID) {
					t.Fatalf("%s R=%d: member %s left: %d replicas lost (it had %d), %d moved needlessly",
						k, reps, gone.ID, lost, before.Count(gone.ID), needless)
				}
				zone := gone.Domain
				others := slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return m.Domain == zone })
				after = mustAssign(t, mustRing(t, k, others), gs, Options{Replicas: reps})
				if _, needless := movement(before, after); needless != 0 {
					t.Fatalf("%s R=%d: domain %s left: %d replicas moved needlessly", k, reps, zone, needless)
				}
				dom := domainOf(others)
				for addr, ids := range byAddress(after) {
					seen := map[string]bool{}
					for _, id := range ids {
						seen[dom[id]] = true
					}
					if len(seen) != min(reps, d-1) {
						t.Fatalf("%s R=%d: after domain %s left, %s is in %d domains", k, reps, zone, addr, len(seen))
					}
				}
			}
		}
	}
}

// Explain says why a member was passed over.
func TestExplainSpread(t *testing.T) {
	ms := []Member{{ID: "c1", Domain: "a"}, {ID: "c2", Domain: "a"}, {ID: "c3", Domain: "b"}}
	r := mustRing(t, KindRendezvous, ms)
	var gs []*targetgroup.Group
	g := &targetgroup.Group{Source: "s"}
	for i := range 200 {
		g.Targets = append(g.Targets, map[model.LabelName]model.LabelValue{"__address__": model.LabelValue(fmt.Sprintf("h%d:9100", i))})
	}
	gs = append(gs, g)
	a := mustAssign(t, r, gs, Options{Replicas: 2})
	found := false
	for i := range 200 {
		e := Explain(r, a, fmt.Sprintf("h%d:9100", i), "")
		if len(e.Owners) != 2 || e.Domains["c3"] != "b" || !slices.Contains(e.Owners, "c3") {
			t.Fatalf("%+v", e)
		}
		if !reflect.DeepEqual(e.Members, sorted(e.Owners)) {
			t.Fatalf("explain owners %v, assignment %v", e.Owners, e.Members)
		}
		if e.Preference[0] != "c3" && e.Preference[1] != "c3" {
			found = true
			want := fmt.Sprintf("%s is passed over: %s in domain \"a\" already holds replica 1", e.Preference[1], e.Preference[0])
			if !strings.Contains(e.Why, want) || !strings.Contains(e.Why, "c3 (domain \"b\") takes replica 2") {
				t.Fatalf("why: %s", e.Why)
			}
		}
	}
	if !found {
		t.Fatal("no target with both zone-a members ranked first")
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
