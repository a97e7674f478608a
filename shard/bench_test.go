package shard

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

var benchPools = map[int][]*targetgroup.Group{}

func benchPool(t int) []*targetgroup.Group {
	if p, ok := benchPools[t]; ok {
		return p
	}
	p := pool(rand.New(rand.NewPCG(42, uint64(t))), t, 1000)
	benchPools[t] = p
	return p
}

// BenchmarkAssign measures a full assignment with every ring. Besides ns/op
// it reports ns/target, allocs/target, max/mean and min/mean load, and
// moved/optimum: the
// targets whose owner changed when one member leaves, over the optimum T/N
// (1.0 is optimal movement).
func BenchmarkAssign(b *testing.B) {
	for _, k := range Kinds() {
		for _, t := range []int{10_000, 100_000, 1_000_000} {
			for _, n := range []int{3, 10, 100} {
				b.Run(fmt.Sprintf("ring=%s/T=%d/N=%d", k, t, n), func(b *testing.B) {
					gs := benchPool(t)
					r := mustRing(b, k, members(n))
					var ms0, ms1 runtime.MemStats
					runtime.ReadMemStats(&ms0)
					var a *Assignment
					b.ResetTimer()
					for b.Loop() {
						a = mustAssign(b, r, gs, Options{})
					}
					b.StopTimer()
					runtime.ReadMemStats(&ms1)
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(t), "ns/target")
					b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N)/float64(t), "allocs/target")
					hi, lo := loads(a)
					b.ReportMetric(hi, "max/mean")
					b.ReportMetric(lo, "min/mean")
					b.ReportMetric(movedOverOptimum(b, k, n, gs), "moved/optimum")
				})
			}
		}
	}
}

// movedOverOptimum removes one member and counts targets whose owner changed.
func movedOverOptimum(b *testing.B, k Kind, n int, gs []*targetgroup.Group) float64 {
	ms := members(n)
	before, after := mustRing(b, k, ms), mustRing(b, k, ms[1:])
	moved, total := 0, 0
	var d1, d2 []int
	for _, g := range gs {
		for _, t := range g.Targets {
			h := Hash(Key(t, g.Labels, ""))
			d1 = before.Owners(h, 1, d1[:0])
			d2 = after.Owners(h, 1, d2[:0])
			if before.Members()[d1[0]].ID != after.Members()[d2[0]].ID {
				moved++
			}
			total++
		}
	}
	return float64(moved) / (float64(total) / float64(n))
}

// BenchmarkRingBuild measures building each ring.
func BenchmarkRingBuild(b *testing.B) {
	for _, k := range Kinds() {
		for _, n := range []int{3, 10, 100} {
			b.Run(fmt.Sprintf("ring=%s/N=%d", k, n), func(b *testing.B) {
				ms := members(n)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := New(k, ms); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkLookup measures one key lookup (R=1) on each ring.
func BenchmarkLookup(b *testing.B) {
	for _, k := range Kinds() {
		for _, n := range []int{3, 10, 100} {
			b.Run(fmt.Sprintf("ring=%s/N=%d", k, n), func(b *testing.B) {
				r := mustRing(b, k, members(n))
				dst := make([]int, 0, 1)
				b.ReportAllocs()
				var i uint64
				for b.Loop() {
					i++
					dst = r.Owners(mix(i), 1, dst[:0])
				}
			})
		}
	}
}

// BenchmarkAssignSpread measures R=2 over 100 members in 3 failure domains
// against the same members without domains: ns/target, max/mean and
// min/mean load, and moved/optimum when one whole domain leaves (replicas
// moved, over the replicas the domain held: 1.0 is optimal).
func BenchmarkAssignSpread(b *testing.B) {
	for _, t := range []int{100_000, 1_000_000} {
		for _, spread := range []bool{false, true} {
			b.Run(fmt.Sprintf("T=%d/N=100/zones=3/spread=%v", t, spread), func(b *testing.B) {
				gs := benchPool(t)
				ms := members(100)
				if spread {
					for i := range ms {
						ms[i].Domain = fmt.Sprintf("zone-%c", 'a'+i%3)
					}
				}
				r := mustRing(b, KindRendezvous, ms)
				var a *Assignment
				for b.Loop() {
					a = mustAssign(b, r, gs, Options{Replicas: 2})
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(t), "ns/target")
				hi, lo := loads(a)
				b.ReportMetric(hi, "max/mean")
				b.ReportMetric(lo, "min/mean")
				rest := slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return m.Domain == "zone-a" })
				if !spread {
					rest = ms[34:] // as many members as zone-a has
				}
				after := mustAssign(b, mustRing(b, KindRendezvous, rest), gs, Options{Replicas: 2})
				lost, needless := movement(a, after)
				b.ReportMetric(float64(lost+needless)/float64(lost), "moved/optimum")
			})
		}
	}
}

// BenchmarkLookupKey measures the exported Lookup, as explain and an
// embedder asking "who owns this address" call it: the key hashed, the
// owner found, the member returned.
func BenchmarkLookupKey(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			r := mustRing(b, DefaultKind, members(n))
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = fmt.Sprintf("10.%d.%d.%d:9100", i/65536, i/256%256, i%256)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				_ = Lookup(r, keys[i%len(keys)], 1)
			}
		})
	}
}

// placementTable is an Options.Placement over answers computed before (as
// a caller that relabels each target once keeps them): by group, then by
// target, with the last group's remembered, since Assign asks group by
// group.
func placementTable(t map[*targetgroup.Group][]Placement) func(*targetgroup.Group, int) Placement {
	var last *targetgroup.Group
	var ps []Placement
	return func(g *targetgroup.Group, i int) Placement {
		if g != last {
			last, ps = g, t[g]
		}
		if ps == nil {
			return Placement{}
		}
		return ps[i]
	}
}

// BenchmarkAssignPlacement measures Assign at 1M targets × 100 members
// with Options.Placement against the plain path in the same run: "keyed"
// places every target by a key of its own and drops one in ten (what a
// relabelling leaves, computed once before), "zone" makes every target
// prefer one of three zones (members in three zones, R=1 and R=2),
// "overrides" gives 1% of the targets an override (pinned, two replicas of
// their own, or, one in a thousand, on every member).
func BenchmarkAssignPlacement(b *testing.B) {
	const t = 1_000_000
	gs := benchPool(t)
	ms := members(100)
	for i := range ms {
		ms[i].Domain = fmt.Sprintf("zone-%c", 'a'+i%3)
	}
	r := mustRing(b, KindRendezvous, ms)
	keyed := map[*targetgroup.Group][]Placement{}
	zoned := map[*targetgroup.Group][]Placement{}
	overrides := map[*targetgroup.Group][]Placement{}
	for _, g := range gs {
		kp, zp, op := make([]Placement, len(g.Targets)), make([]Placement, len(g.Targets)), make([]Placement, len(g.Targets))
		for i, tg := range g.Targets {
			kp[i] = Placement{Key: "relabelled-" + string(tg[model.AddressLabel]), Drop: i%10 == 9}
			zp[i] = Placement{Zone: fmt.Sprintf("zone-%c", 'a'+Hash(string(tg[model.AddressLabel]))%3)}
			switch i % 300 { // 1%: pinned, two replicas of its own, on every member
			case 0, 1:
				op[i] = Placement{Pin: ms[i%len(ms)].ID}
			case 2:
				op[i] = Placement{Replicas: 2}
			}
			if i%1000 == 3 {
				op[i] = Placement{Every: true}
			}
		}
		keyed[g], zoned[g], overrides[g] = kp, zp, op
	}
	for _, reps := range []int{1, 2} {
		for _, c := range []struct {
			name string
			t    map[*targetgroup.Group][]Placement
		}{{"plain", nil}, {"keyed", keyed}, {"zone", zoned}, {"overrides", overrides}} {
			b.Run(fmt.Sprintf("R=%d/%s", reps, c.name), func(b *testing.B) {
				for b.Loop() {
					opts := Options{Replicas: reps}
					if c.t != nil {
						opts.Placement = placementTable(c.t)
					}
					mustAssign(b, r, gs, opts)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(t), "ns/target")
			})
		}
	}
}
