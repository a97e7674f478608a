package shard

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// pareto draws a heavy-tailed cost: 1k to 1M series, α = 1.2.
func pareto(rng *rand.Rand) uint64 {
	return uint64(min(1e6, 1000/math.Pow(1-rng.Float64(), 1/1.2)))
}

func costsOf(rng *rand.Rand, gs []*targetgroup.Group, draw func(*rand.Rand) uint64) map[uint64]uint64 {
	costs := map[string]uint64{}
	for _, g := range gs {
		for _, t := range g.Targets {
			costs[string(t[model.AddressLabel])] = draw(rng)
		}
	}
	out := make(map[uint64]uint64, len(costs))
	for a, c := range costs {
		out[Hash(a)] = c
	}
	return out
}

// maxOverMean is the most cost on a member over the mean, by weight.
func maxOverMean(a *Assignment) float64 {
	var total, wsum float64
	for _, m := range a.Members {
		total += float64(a.Cost[m.ID])
		wsum += float64(m.weight())
	}
	worst := 0.0
	for _, m := range a.Members {
		worst = max(worst, float64(a.Cost[m.ID])/(total*float64(m.weight())/wsum))
	}
	return worst
}

// The bound holds for heavy-tailed costs and random weights, up to one
// target's granularity; every target keeps Replicas distinct owners; the
// result does not depend on the input order; it is far flatter than the
// count assignment's.
func TestBalanceBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for round := range 12 {
		gs := pool(rng, 5000, 200)
		costs := costsOf(rng, gs, pareto)
		ms := members(4 + rng.IntN(12))
		for i := range ms {
			ms[i].Weight = uint32(1 + rng.IntN(3))
			ms[i].Domain = fmt.Sprintf("z%d", i%3)
		}
		reps := 1 + round%2
		opts := Options{Replicas: reps, Costs: NewCosts(costs)}
		kind := Kinds()[round%len(Kinds())]
		a := mustAssign(t, mustRing(t, kind, ms), gs, opts)
		var total, wsum, biggest uint64
		for _, c := range costs {
			total += c * uint64(reps)
			biggest = max(biggest, c)
		}
		for _, m := range ms {
			wsum += uint64(m.weight())
		}
		for _, m := range ms {
			bound := float64(total) * float64(m.weight()) / float64(wsum) * (1 + DefaultEpsilon)
			if c := float64(a.Cost[m.ID]); c > bound+float64(biggest) {
				t.Fatalf("round %d: %s holds %.0f, bound %.0f (+ one target %d)", round, m.ID, c, bound, biggest)
			}
		}
		for id, ms := range ownersOf(a) {
			if len(ms) != reps {
				t.Fatalf("round %d: target %x on %v, want %d owners", round, id, ms, reps)
			}
		}
		shuffled := slices.Clone(gs)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if b := mustAssign(t, mustRing(t, kind, ms), shuffled, opts); dump(a) != dump(b) {
			t.Fatalf("round %d: the result depends on the input order", round)
		}
		count := mustAssign(t, mustRing(t, kind, ms), gs, Options{Replicas: reps, Costs: NewCosts(costs), Epsilon: 10})
		if got, was := maxOverMean(a), maxOverMean(count); got > was {
			t.Fatalf("round %d: balanced max/mean %.3f is worse than unbounded %.3f", round, got, was)
		}
	}
}

// With equal costs the assignment is the count assignment, as long as no
// member's natural share exceeds its bound (a large pool).
func TestBalanceEqualCostsIsCountAssignment(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	gs := pool(rng, 20000, 500)
	ms := members(8)
	compared := 0
	defer func() {
		if compared == 0 {
			t.Error("no ring's natural spread was within the bound: nothing compared")
		}
	}()
	for _, reps := range []int{1, 2} {
		for _, kind := range Kinds() {
			count := mustAssign(t, mustRing(t, kind, ms), gs, Options{Replicas: reps})
			worst := 0
			for _, m := range ms {
				worst = max(worst, count.Count(m.ID))
			}
			mean := float64(count.Targets*reps) / float64(len(ms))
			if float64(worst) > mean*(1+DefaultEpsilon) {
				continue // this ring's natural spread exceeds the bound here: the results may differ, by design
			}
			costs := costsOf(rng, gs, func(*rand.Rand) uint64 { return 1000 })
			bal := mustAssign(t, mustRing(t, kind, ms), gs, Options{Replicas: reps, Costs: NewCosts(costs)})
			compared++
			if dump(bal) != dump(count) {
				t.Fatalf("%s R=%d: equal costs changed the assignment", kind, reps)
			}
		}
	}
}

// A capacity is never exceeded: what does not fit is unplaced and listed,
// or, with Overcommit, given its usual owners.
func TestBalanceCapacity(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	gs := pool(rng, 1000, 100)
	costs := costsOf(rng, gs, func(*rand.Rand) uint64 { return 100 })
	ms := members(4)
	capacity := map[string]uint64{}
	for _, m := range ms {
		capacity[m.ID] = 100 * 200 // 200 targets each: 800 of 1000 fit
	}
	a := mustAssign(t, mustRing(t, KindRendezvous, ms), gs, Options{Costs: NewCosts(costs), Capacity: capacity})
	for _, m := range ms {
		if a.Cost[m.ID] > capacity[m.ID] {
			t.Fatalf("%s holds %d, capacity %d", m.ID, a.Cost[m.ID], capacity[m.ID])
		}
	}
	placed := 0
	for _, m := range ms {
		placed += a.Count(m.ID)
	}
	if placed != 800 || len(a.Unplaced) != 200 {
		t.Fatalf("placed %d, unplaced %d; want 800 and 200", placed, len(a.Unplaced))
	}
	over := mustAssign(t, mustRing(t, KindRendezvous, ms), gs, Options{Costs: NewCosts(costs), Capacity: capacity, Overcommit: true})
	if len(over.Unplaced) != 0 || over.Targets != 1000 {
		t.Fatalf("overcommit: %d unplaced", len(over.Unplaced))
	}
	if d := Compare(a, over); d.Moved != 200 || d.Unchanged != 800 {
		t.Fatalf("compare with unplaced targets: %+v", d)
	}
	if _, err := Assign(mustRing(t, KindRendezvous, ms), gs, Options{Costs: NewCosts(costs), Epsilon: -1}); err == nil {
		t.Fatal("a negative epsilon was accepted")
	}
}

// BenchmarkBalance places 100k targets with Pareto costs (α 1.2, 1k to 1M
// series) over 10 and 100 members: the series max/mean by count and by
// cost, ns per target of each, and the targets moved when one member leaves
// over the optimum (that member's targets).
func BenchmarkBalance(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	gs := pool(rng, 100_000, 1000)
	costs := costsOf(rng, gs, pareto)
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ms := members(n)
			r, _ := New(KindRendezvous, ms)
			var count, bal *Assignment
			var tc, tb float64
			for b.Loop() {
				start := nowNanos()
				count, _ = Assign(r, gs, Options{})
				tc += float64(nowNanos() - start)
				start = nowNanos()
				bal, _ = Assign(r, gs, Options{Costs: NewCosts(costs)})
				tb += float64(nowNanos() - start)
			}
			count.Cost = map[string]uint64{} // the series each member would carry by count
			for _, m := range ms {
				for _, g := range count.GroupsOf(m.ID) {
					for _, t := range g.Targets {
						count.Cost[m.ID] += costs[Hash(string(t[model.AddressLabel]))]
					}
				}
			}
			left, _ := New(KindRendezvous, ms[1:])
			after, _ := Assign(left, gs, Options{Costs: NewCosts(costs)})
			optimum := bal.Count(ms[0].ID)
			nb := float64(b.N) * float64(bal.Targets)
			b.ReportMetric(maxOverMean(count), "count-max/mean")
			b.ReportMetric(maxOverMean(bal), "series-max/mean")
			b.ReportMetric(tc/nb, "count-ns/target")
			b.ReportMetric(tb/nb, "series-ns/target")
			b.ReportMetric(float64(Compare(bal, after).Moved)/float64(optimum), "moved/optimum")
		})
	}
}

func nowNanos() int64 { return time.Now().UnixNano() }

func TestNth(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for n := 1; n < 300; n += 7 {
		xs := make([]uint64, n)
		for i := range xs {
			xs[i] = uint64(rng.IntN(20)) // many ties
		}
		want := slices.Sorted(slices.Values(xs))
		for _, k := range []int{0, n / 2, n - 1} {
			if got := nth(slices.Clone(xs), k); got != want[k] {
				t.Fatalf("n %d k %d: %d, want %d", n, k, got, want[k])
			}
		}
	}
}

// Overloaded judges an assignment under costs measured since: the count
// assignment of heavy-tailed costs has members above the bound; the cost
// assignment of the same costs has none of the members it could keep
// within it; a capacity below a member's load names it.
func TestOverloaded(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 2))
	gs := pool(rng, 3000, 100)
	costs := costsOf(rng, gs, pareto)
	ring := mustRing(t, DefaultKind, members(20))
	byCount := mustAssign(t, ring, gs, Options{})
	opts := Options{Costs: NewCosts(costs)}
	if over := Overloaded(byCount, opts); len(over) == 0 {
		t.Fatalf("the count assignment of Pareto costs: no member above its bound (max/mean %.2f)",
			maxOverMean(mustAssign(t, ring, gs, Options{Costs: NewCosts(costs), Epsilon: 10})))
	}
	byCost := mustAssign(t, ring, gs, opts)
	var total uint64
	for _, c := range byCost.Cost {
		total += c
	}
	var want []string
	for _, m := range byCost.Members {
		if float64(byCost.Cost[m.ID]) > float64(total)/20*1.1 {
			want = append(want, m.ID) // a target bigger than the room left anywhere
		}
	}
	if got := Overloaded(byCost, opts); !slices.Equal(got, want) {
		t.Fatalf("the cost assignment: Overloaded %v, want %v (loads %v)", got, want, byCost.Cost)
	}
	heaviest := slices.MaxFunc(byCost.Members, func(a, b Member) int { return int(byCost.Cost[a.ID]) - int(byCost.Cost[b.ID]) })
	opts.Capacity = map[string]uint64{heaviest.ID: byCost.Cost[heaviest.ID] - 1}
	if got := Overloaded(byCost, opts); !slices.Contains(got, heaviest.ID) {
		t.Fatalf("%s holds %d over a capacity of %d: Overloaded %v", heaviest.ID, byCost.Cost[heaviest.ID],
			opts.Capacity[heaviest.ID], got)
	}
	// Targets without a cost count the median, as in Assign: what Assign
	// placed by equal costs is within the bound.
	equal := Options{Costs: NewCosts(map[uint64]uint64{})}
	if got := Overloaded(mustAssign(t, ring, gs, equal), equal); len(got) != 0 {
		t.Fatalf("equal costs: Overloaded %v", got)
	}
}

// Lookup finds exactly what the map holds, for uniform hashes and for odd
// tables (small numbers, clusters), and nothing else.
func TestCostsLookup(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for round := range 40 {
		m := map[uint64]uint64{}
		for i := range rng.IntN(3000) {
			var h uint64
			switch round % 3 {
			case 0:
				h = rng.Uint64()
			case 1:
				h = uint64(rng.IntN(5000)) // all near 0
			default:
				h = ^uint64(0) - uint64(rng.IntN(50)) - uint64(i%2)<<62 // two clusters
			}
			m[h] = uint64(i)
		}
		c := NewCosts(m)
		if c.Len() != len(m) {
			t.Fatalf("round %d: %d entries, want %d", round, c.Len(), len(m))
		}
		for h, v := range m {
			if got, ok := c.Lookup(h); !ok || got != v {
				t.Fatalf("round %d: Lookup(%x) = %d, %v; want %d", round, h, got, ok, v)
			}
			if _, ok := m[h+1]; !ok {
				if _, found := c.Lookup(h + 1); found {
					t.Fatalf("round %d: Lookup(%x) found a cost that is not there", round, h+1)
				}
			}
		}
	}
	var none *Costs
	if _, ok := none.Lookup(1); ok || none.Len() != 0 {
		t.Fatal("a nil table has costs")
	}
}

// Heaviest lists each member's costliest targets, costliest first, with
// their share of the member's total.
func TestHeaviest(t *testing.T) {
	ring, _ := New(KindRendezvous, []Member{{ID: "a"}, {ID: "b"}})
	g := &targetgroup.Group{}
	costs := map[string]uint64{}
	for i := range 20 {
		addr := fmt.Sprintf("10.0.0.%d:9100", i)
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(addr)})
		costs[addr] = uint64(10 * (i + 1))
	}
	table := CostTable(costs)
	a, err := Assign(ring, []*targetgroup.Group{g}, Options{Costs: table})
	if err != nil {
		t.Fatal(err)
	}
	top := Heaviest(a, table, 3)
	for _, m := range a.Members {
		l := top[m.ID]
		if len(l) != 3 || l[0].Cost < l[1].Cost || l[1].Cost < l[2].Cost {
			t.Fatalf("%s: %+v", m.ID, l)
		}
		var best uint64
		for _, gg := range a.GroupsOf(m.ID) {
			for _, tt := range gg.Targets {
				best = max(best, costs[string(tt[model.AddressLabel])])
			}
		}
		if l[0].Cost != best || math.Abs(l[0].Share-float64(best)/float64(a.Cost[m.ID])) > 1e-9 {
			t.Fatalf("%s: heaviest %+v, want %d series of %d", m.ID, l[0], best, a.Cost[m.ID])
		}
	}
	if Heaviest(a, nil, 3) != nil {
		t.Fatal("no costs, yet a list")
	}
}
