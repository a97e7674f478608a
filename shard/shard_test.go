package shard

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

func members(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("collector-%03d:9090", i)}
	}
	return ms
}

// pool makes t targets in groups of at most per targets, with group labels
// and, for some targets, labels of their own.
func pool(rng *rand.Rand, t, per int) []*targetgroup.Group {
	var gs []*targetgroup.Group
	for i := 0; i < t; i += per {
		g := &targetgroup.Group{
			Source: fmt.Sprintf("src-%d", i/per),
			Labels: model.LabelSet{"job": "node", "zone": model.LabelValue(fmt.Sprintf("z%d", i%3))},
		}
		for j := i; j < min(t, i+per); j++ {
			ls := model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.%d.%d.%d:%d", j>>16&255, j>>8&255, j&255, 9100+rng.IntN(3)))}
			if j%7 == 0 {
				ls["rack"] = model.LabelValue(fmt.Sprintf("r%d", j%5))
			}
			g.Targets = append(g.Targets, ls)
		}
		gs = append(gs, g)
	}
	return gs
}

func mustRing(t testing.TB, k Kind, ms []Member) Ring {
	t.Helper()
	r, err := New(k, ms)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustAssign(t testing.TB, r Ring, gs []*targetgroup.Group, o Options) *Assignment {
	t.Helper()
	a, err := Assign(r, gs, o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// dump renders an assignment as text, in its own order.
func dump(a *Assignment) string {
	var b strings.Builder
	for _, m := range a.Members {
		fmt.Fprintf(&b, "member %s\n", m.ID)
		for _, g := range a.GroupsOf(m.ID) {
			fmt.Fprintf(&b, " group %q %v\n", g.Source, g.Labels)
			for _, t := range g.Targets {
				fmt.Fprintf(&b, "  %v\n", t)
			}
		}
	}
	return b.String()
}

// owners maps target identity to its members.
func ownersOf(a *Assignment) map[uint64][]string { return placements(a) }

func TestDeterministicAcrossInputOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, k := range Kinds() {
		for _, reps := range []int{1, 2, 3} {
			ms := members(7)
			gs := pool(rng, 3000, 250)
			want := dump(mustAssign(t, mustRing(t, k, ms), gs, Options{Replicas: reps}))
			for range 3 {
				// Shuffle members, groups and each group's targets.
				ms2 := append([]Member(nil), ms...)
				rng.Shuffle(len(ms2), func(i, j int) { ms2[i], ms2[j] = ms2[j], ms2[i] })
				var gs2 []*targetgroup.Group
				for _, g := range gs {
					c := *g
					c.Targets = append([]model.LabelSet(nil), g.Targets...)
					rng.Shuffle(len(c.Targets), func(i, j int) { c.Targets[i], c.Targets[j] = c.Targets[j], c.Targets[i] })
					gs2 = append(gs2, &c)
				}
				rng.Shuffle(len(gs2), func(i, j int) { gs2[i], gs2[j] = gs2[j], gs2[i] })
				if got := dump(mustAssign(t, mustRing(t, k, ms2), gs2, Options{Replicas: reps})); got != want {
					t.Fatalf("ring %s R=%d: assignment depends on input order", k, reps)
				}
			}
		}
	}
}

// TestStableAcrossMachines pins a few placements, so that a change of hash or
// ring arithmetic (which would reshuffle every user's targets on upgrade)
// fails here.
func TestStableAcrossMachines(t *testing.T) {
	ms := members(5)
	for _, tc := range []struct {
		kind Kind
		key  string
		want string
	}{
		{KindRendezvous, "10.0.0.1:9100", "collector-001:9090"},
		{KindRendezvous, "10.0.0.2:9100", "collector-001:9090"},
		{KindConsistent, "10.0.0.1:9100", "collector-004:9090"},
		{KindConsistent, "10.0.0.2:9100", "collector-004:9090"},
	} {
		got := Lookup(mustRing(t, tc.kind, ms), tc.key, 1)[0].ID
		if got != tc.want {
			t.Errorf("%s: %s on %s, pinned %s", tc.kind, tc.key, got, tc.want)
		}
	}
}

func TestEveryTargetPlacedOnDistinctMembers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	gs := pool(rng, 5000, 1000)
	for _, k := range Kinds() {
		for _, reps := range []int{1, 2, 3} {
			a := mustAssign(t, mustRing(t, k, members(6)), gs, Options{Replicas: reps})
			if a.Targets != 5000 {
				t.Fatalf("Targets = %d", a.Targets)
			}
			total := 0
			for _, ids := range ownersOf(a) {
				if len(ids) != reps {
					t.Fatalf("%s R=%d: a target is on %d members %v", k, reps, len(ids), ids)
				}
				total++
			}
			if total != 5000 {
				t.Fatalf("%s: %d distinct targets placed, want 5000", k, total)
			}
		}
	}
}

// TestMinimalMovement: removing a member moves only its targets; adding one
// moves targets only onto it. Both for R=1 and R=2, on every ring.
func TestMinimalMovement(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, k := range Kinds() {
		for _, reps := range []int{1, 2} {
			for trial := range 3 {
				n := 3 + rng.IntN(20)
				ms := members(n)
				gs := pool(rng, 4000, 500)
				before := mustAssign(t, mustRing(t, k, ms), gs, Options{Replicas: reps})
				gone := ms[rng.IntN(n)]
				var rest []Member
				for _, m := range ms {
					if m != gone {
						rest = append(rest, m)
					}
				}
				after := mustAssign(t, mustRing(t, k, rest), gs, Options{Replicas: reps})
				pb, pa := ownersOf(before), ownersOf(after)
				moved := 0
				for id, was := range pb {
					now := pa[id]
					for _, m := range was {
						if m != gone.ID && !slices.Contains(now, m) {
							t.Fatalf("%s R=%d trial %d: removing %s took a target from %s", k, reps, trial, gone.ID, m)
						}
					}
					if slices.Contains(was, gone.ID) {
						moved++
					} else if !slices.Equal(was, now) {
						t.Fatalf("%s R=%d: target not on %s moved %v -> %v", k, reps, gone.ID, was, now)
					}
				}
				if moved != before.Count(gone.ID) {
					t.Fatalf("moved %d, removed member held %d", moved, before.Count(gone.ID))
				}
				// Adding it back moves targets only onto it.
				again := mustAssign(t, mustRing(t, k, ms), gs, Options{Replicas: reps})
				d := Compare(after, again)
				for id, md := range d.Members {
					if id != gone.ID && md.Gained > 0 {
						t.Fatalf("%s R=%d: adding %s gave %d targets to %s", k, reps, gone.ID, md.Gained, id)
					}
				}
				if dump(again) != dump(before) {
					t.Fatalf("%s: leaving and rejoining does not restore the assignment", k)
				}
			}
		}
	}
}

func loads(a *Assignment) (maxMean, minMean float64) {
	mean := float64(a.Targets*a.Replicas) / float64(len(a.Members))
	lo, hi := a.Targets, 0
	for _, m := range a.Members {
		c := a.Count(m.ID)
		lo, hi = min(lo, c), max(hi, c)
	}
	return float64(hi) / mean, float64(lo) / mean
}

// TestDefaultBalance checks the default ring's load against the limits of
// random placement. At N=100, T=10k a member's load is Binomial(10k, 1/100):
// the expected max/mean is about 1.25 and a single pool exceeds 1.30 about
// one time in ten for any placement that hashes targets independently, so
// that case is held to its average over several pools.
func TestDefaultBalance(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tc := range []struct {
		n, t       int
		avgMax     float64 // limit on the average max/mean
		worstMax   float64 // limit on every pool's max/mean
		worstBelow float64 // limit on every pool's min/mean
	}{
		{10, 100_000, 1.05, 1.05, 0.90},
		{100, 10_000, 1.30, 1.45, 0.55},
	} {
		const trials = 8
		sum := 0.0
		for trial := range trials {
			gs := pool(rng, tc.t, 1000)
			a := mustAssign(t, mustRing(t, DefaultKind, members(tc.n)), gs, Options{})
			hi, lo := loads(a)
			sum += hi
			if hi > tc.worstMax || lo < tc.worstBelow {
				t.Errorf("N=%d T=%d trial %d: max/mean %.3f (limit %.2f), min/mean %.3f (limit %.2f)", tc.n, tc.t, trial, hi, tc.worstMax, lo, tc.worstBelow)
			}
		}
		t.Logf("N=%d T=%d: average max/mean %.3f over %d pools", tc.n, tc.t, sum/trials, trials)
		if avg := sum / trials; avg > tc.avgMax {
			t.Errorf("N=%d T=%d: average max/mean %.3f, limit %.2f", tc.n, tc.t, avg, tc.avgMax)
		}
	}
}

func TestWeights(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	gs := pool(rng, 60_000, 1000)
	ms := []Member{{ID: "a:1", Weight: 1}, {ID: "b:1", Weight: 2}, {ID: "c:1", Weight: 3}}
	for _, k := range Kinds() {
		a := mustAssign(t, mustRing(t, k, ms), gs, Options{})
		for _, m := range ms {
			want := 60_000 * float64(m.Weight) / 6
			got := float64(a.Count(m.ID))
			if got < want*0.9 || got > want*1.1 {
				t.Errorf("%s: %s weight %d got %.0f targets, want about %.0f", k, m.ID, m.Weight, got, want)
			}
		}
	}
}

func TestReplicasAboveMembers(t *testing.T) {
	gs := pool(rand.New(rand.NewPCG(1, 1)), 100, 10)
	a := mustAssign(t, mustRing(t, DefaultKind, members(2)), gs, Options{Replicas: 3})
	if !a.Degraded() || a.Replicas != 2 || a.RequestedReplicas != 3 {
		t.Fatalf("Degraded=%v Replicas=%d Requested=%d", a.Degraded(), a.Replicas, a.RequestedReplicas)
	}
	for _, m := range a.Members {
		if a.Count(m.ID) != 100 {
			t.Fatalf("%s has %d targets, want all 100", m.ID, a.Count(m.ID))
		}
	}
}

func TestKeyLabelKeepsTargetsTogether(t *testing.T) {
	var gs []*targetgroup.Group
	for i := range 200 {
		g := &targetgroup.Group{Source: fmt.Sprint(i), Labels: model.LabelSet{"instance": model.LabelValue(fmt.Sprintf("host-%d", i/4))}}
		g.Targets = []model.LabelSet{{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d:9100", i))}}
		gs = append(gs, g)
	}
	a := mustAssign(t, mustRing(t, DefaultKind, members(5)), gs, Options{KeyLabel: "instance"})
	where := map[model.LabelValue]string{}
	for id, groups := range a.Groups {
		for _, g := range groups {
			inst := g.Labels["instance"]
			if w, ok := where[inst]; ok && w != id {
				t.Fatalf("instance %s split over %s and %s", inst, w, id)
			}
			where[inst] = id
		}
	}
	if len(where) != 50 {
		t.Fatalf("%d instances placed, want 50", len(where))
	}
}

func TestBigGroupIsSpreadAndLabelsShared(t *testing.T) {
	gs := pool(rand.New(rand.NewPCG(2, 2)), 10_000, 10_000)
	a := mustAssign(t, mustRing(t, DefaultKind, members(4)), gs, Options{})
	in := map[model.LabelValue]model.LabelSet{}
	for _, tg := range gs[0].Targets {
		in[tg[model.AddressLabel]] = tg
	}
	for _, m := range a.Members {
		groups := a.GroupsOf(m.ID)
		if len(groups) != 1 || len(groups[0].Targets) < 2000 {
			t.Fatalf("%s: one group of 10000 targets should spread; got %d groups", m.ID, len(groups))
		}
		g := groups[0]
		if g.Source != gs[0].Source || reflect.ValueOf(g.Labels).Pointer() != reflect.ValueOf(gs[0].Labels).Pointer() {
			t.Fatalf("output group does not share the input's source and labels")
		}
		for _, tg := range g.Targets {
			if !tg.Equal(in[tg[model.AddressLabel]]) {
				t.Fatalf("target %v is not the input's %v: labels changed", tg, in[tg[model.AddressLabel]])
			}
		}
	}
}

func TestDuplicateSourcesMerge(t *testing.T) {
	a1 := &targetgroup.Group{Source: "s", Labels: model.LabelSet{"x": "1"}, Targets: []model.LabelSet{{model.AddressLabel: "a:1"}}}
	a2 := &targetgroup.Group{Source: "s", Labels: model.LabelSet{"x": "1"}, Targets: []model.LabelSet{{model.AddressLabel: "b:1"}}}
	b := &targetgroup.Group{Source: "s", Labels: model.LabelSet{"x": "2"}, Targets: []model.LabelSet{{model.AddressLabel: "c:1"}}}
	r := mustRing(t, DefaultKind, members(1))
	x := dump(mustAssign(t, r, []*targetgroup.Group{a1, b, a2}, Options{}))
	y := dump(mustAssign(t, r, []*targetgroup.Group{b, a2, a1}, Options{}))
	if x != y || strings.Count(x, "group") != 2 {
		t.Fatalf("duplicate sources not merged deterministically:\n%s\n%s", x, y)
	}
}

func TestErrors(t *testing.T) {
	for _, k := range Kinds() {
		if _, err := New(k, nil); !errors.Is(err, ErrNoMembers) {
			t.Errorf("%s no members: %v", k, err)
		}
		if _, err := New(k, []Member{{ID: "a"}, {ID: ""}}); !errors.Is(err, ErrEmptyMemberID) {
			t.Errorf("%s empty ID: %v", k, err)
		}
		if _, err := New(k, []Member{{ID: "a", Weight: 4294967295}}); !errors.Is(err, ErrWeight) || !strings.Contains(err.Error(), "4294967295") {
			t.Errorf("%s weight 4294967295: %v", k, err)
		}
		if _, err := New(k, []Member{{ID: "a", Weight: MaxWeight}, {ID: "b"}}); err != nil {
			t.Errorf("%s weight MaxWeight: %v", k, err)
		}
		_, err := New(k, []Member{{ID: "a"}, {ID: "b"}, {ID: "a"}})
		if !errors.Is(err, ErrDuplicateMember) || !strings.Contains(err.Error(), `"a"`) {
			t.Errorf("%s duplicate: %v", k, err)
		}
	}
	if _, err := New("maglev", members(1)); !errors.Is(err, ErrUnknownKind) || !strings.Contains(err.Error(), "maglev") {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := ParseKind("x"); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("ParseKind: %v", err)
	}
	r := mustRing(t, DefaultKind, members(2))
	bad := []*targetgroup.Group{{Source: "file.json:0", Targets: []model.LabelSet{{"job": "x"}}}}
	_, err := Assign(r, bad, Options{})
	if !errors.Is(err, ErrNoAddress) || !strings.Contains(err.Error(), "file.json:0") {
		t.Errorf("no address: %v", err)
	}
	if _, err := Assign(r, nil, Options{Replicas: -1}); err == nil || !strings.Contains(err.Error(), "Replicas -1") {
		t.Errorf("negative replicas: %v", err)
	}
	if _, err := Assign(r, nil, Options{KeyLabel: "\xff"}); err == nil || !strings.Contains(err.Error(), "KeyLabel") {
		t.Errorf("bad key label: %v", err)
	}
	if _, err := Assign(nil, nil, Options{}); !errors.Is(err, ErrNoMembers) {
		t.Errorf("nil ring: %v", err)
	}
}

func TestEmptyMembersGetEmptyGroups(t *testing.T) {
	a := mustAssign(t, mustRing(t, DefaultKind, members(3)), nil, Options{})
	for _, m := range a.Members {
		if g, ok := a.Groups[m.ID]; !ok || g == nil {
			t.Fatalf("%s has no entry", m.ID)
		}
	}
}

func TestCompare(t *testing.T) {
	gs := pool(rand.New(rand.NewPCG(4, 4)), 1000, 100)
	ms := members(4)
	a := mustAssign(t, mustRing(t, DefaultKind, ms), gs, Options{})
	b := mustAssign(t, mustRing(t, DefaultKind, ms[:3]), gs[:9], Options{})
	d := Compare(a, b)
	if d.Removed != 100 {
		t.Errorf("Removed = %d, want 100", d.Removed)
	}
	lost := d.Members[ms[3].ID].Lost
	if lost != a.Count(ms[3].ID) {
		t.Errorf("leaving member lost %d, held %d", lost, a.Count(ms[3].ID))
	}
	if d.Moved == 0 || d.Moved+d.Unchanged != 900 || d.Added != 0 {
		t.Errorf("diff %+v", d)
	}
	if d0 := Compare(nil, a); d0.Added != 1000 || !d0.Changed() {
		t.Errorf("from nil: %+v", d0)
	}
	if d1 := Compare(a, a); d1.Changed() || len(d1.Members) != 0 {
		t.Errorf("self diff: %+v", d1)
	}
}
