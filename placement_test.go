package promshard

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v2"

	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/watch"
)

// rules reads relabel_configs as a config file holds them.
func rules(t testing.TB, y string) []*relabel.Config {
	t.Helper()
	var rs []*relabel.Config
	if err := yaml.UnmarshalStrict([]byte(y), &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

// Job.Relabel: a target the rules drop is not placed nor counted, two
// targets that the rules make one share their collector, the outputs get
// the original labels, and Explain names the rule.
func TestRelabelBeforePlacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &targetgroup.Group{Source: "cmdb", Labels: model.LabelSet{"env": "prod"}}
		for i := range 40 {
			tier := "web"
			if i%2 == 1 {
				tier = "batch"
			}
			g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("host-%d.example:9100", i)), "tier": model.LabelValue(tier)})
		}
		// Two names of one host: the rules strip the domain, so they become one.
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: "alias-a.example:9100", "tier": "web", "host": "same"},
			model.LabelSet{model.AddressLabel: "alias-b.example:9100", "tier": "web", "host": "same"})
		h := start(t, Job{Targets: targets.Static{g}, Relabel: rules(t, `
- {source_labels: [tier], regex: batch, action: drop}
- {source_labels: [host, __address__], regex: 'same;.*(:\d+)', target_label: __address__, replacement: 'same$1'}
`)}, Options{})
		h.members("a", "b", "c", "d")
		_, counts := h.out.snapshot()
		total := 0
		for _, n := range counts {
			total += n
		}
		if total != 22 {
			t.Fatalf("%d targets placed (%v), want 20 web ones and the two aliases", total, counts)
		}
		snap, _ := h.s.Snapshot("node")
		if snap.Assignment.Targets != 22 {
			t.Fatalf("Assignment.Targets %d, want 22: the dropped are not counted", snap.Assignment.Targets)
		}
		if v := testutil.ToFloat64(h.s.m.dropped.WithLabelValues("node")); v != 20 {
			t.Fatalf("promshard_relabel_dropped_targets %v, want 20", v)
		}
		owner := map[string]string{}
		h.out.mu.Lock()
		for id, gs := range h.out.last {
			for _, og := range gs {
				for _, tg := range og.Targets {
					if tg["tier"] == "batch" {
						t.Errorf("%s got dropped %v", id, tg)
					}
					owner[string(tg[model.AddressLabel])] = id
					if strings.HasPrefix(string(tg[model.AddressLabel]), "same") {
						t.Errorf("the output holds a relabelled address: %v", tg)
					}
				}
			}
		}
		h.out.mu.Unlock()
		if owner["alias-a.example:9100"] != owner["alias-b.example:9100"] {
			t.Fatalf("two targets that relabel into one are on %s and %s", owner["alias-a.example:9100"], owner["alias-b.example:9100"])
		}
		e, err := h.s.Explain("node", "host-1.example:9100")
		if err != nil || !e.Dropped || !strings.Contains(e.Placement, "relabel_configs[0] (action drop) dropped it") {
			t.Fatalf("explain of a dropped target: %+v %v", e, err)
		}
		e, err = h.s.Explain("node", "alias-a.example:9100")
		if err != nil || e.Key != "same:9100" || !strings.Contains(e.Why, "relabel_configs[1] (action replace) rewrote its __address__") ||
			len(e.Members) != 1 || e.Members[0] != owner["alias-a.example:9100"] || e.Owners[0] != e.Members[0] {
			t.Fatalf("explain of a rewritten target: %+v %v", e, err)
		}
		sim, err := h.s.Simulate(context.Background(), "node", shard.Change{Remove: []string{"a"}}, 0)
		if err != nil || sim.Targets != 22 {
			t.Fatalf("simulate: %+v %v", sim, err)
		}
	})
}

// Job.PreferZoneLabel: each target's first replica is in its own zone,
// while that zone has a collector.
func TestPreferZone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &targetgroup.Group{Source: "cmdb"}
		for i := range 60 {
			g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.0.0.%d:9100", i)),
				"zone": model.LabelValue([]string{"a", "b", "c"}[i%3])})
		}
		h := start(t, Job{Targets: targets.Static{g}, SpreadBy: "zone", PreferZoneLabel: "zone"}, Options{})
		ms := func(ids ...string) []watch.Member {
			out := members(ids...)
			for i := range out {
				out[i].Meta = map[string]string{"zone": ids[i][:1]}
			}
			return out
		}
		check := func(zones string) {
			t.Helper()
			h.out.mu.Lock()
			defer h.out.mu.Unlock()
			n := 0
			for id, gs := range h.out.last {
				for _, og := range gs {
					for _, tg := range og.Targets {
						n++
						if z := string(tg["zone"]); strings.Contains(zones, z) && z != id[:1] {
							t.Fatalf("%v (zone %s) is on %s", tg[model.AddressLabel], z, id)
						}
					}
				}
			}
			if n != 60 {
				t.Fatalf("%d targets placed", n)
			}
		}
		h.src.sets <- ms("a1", "a2", "b1", "c1")
		synctest.Wait()
		check("abc")
		h.src.sets <- ms("a1", "a2", "b1") // zone c has no collector left: its targets go where the ring says
		synctest.Wait()
		check("ab")
	})
	if err := (Job{Name: "x", PreferZoneLabel: "zone"}).validatePlacement(); err == nil || !strings.Contains(err.Error(), "needs Job.SpreadBy") {
		t.Fatalf("PreferZoneLabel without SpreadBy: %v", err)
	}
}

// BenchmarkRelabel measures a typical five-rule relabelling of 1M targets
// (1,000 groups of 1,000), as a job pays it once when its targets first
// appear: ns and allocations per target. A pass over groups already seen
// costs only the look-up ("again").
func BenchmarkRelabel(b *testing.B) {
	rs := rules(b, `
- {source_labels: [env], regex: test, action: drop}
- {source_labels: [__address__], regex: '([^:]+):\d+', target_label: host, replacement: $1}
- {source_labels: [host], regex: '10\.1\..*', target_label: dc, replacement: east}
- {regex: 'tmp_.*', action: labeldrop}
- {source_labels: [__address__], modulus: 10, target_label: __tmp_hash, action: hashmod}
`)
	if err := (Job{Relabel: rs}).validatePlacement(); err != nil {
		b.Fatal(err)
	}
	var gs []*targetgroup.Group
	for g := range 1000 {
		grp := &targetgroup.Group{Source: fmt.Sprint(g), Labels: model.LabelSet{"env": "prod", "team": "infra", "region": "eu"}}
		for i := range 1000 {
			grp.Targets = append(grp.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.%d.%d.%d:9100", g/250, g%250, i%250))})
		}
		gs = append(gs, grp)
	}
	for _, again := range []bool{false, true} {
		b.Run(fmt.Sprintf("again=%v", again), func(b *testing.B) {
			p := newPlacer(Job{Relabel: rs})
			cgs := tstore.FromAll(gs)
			p.options(shard.Options{}, cgs)
			b.ReportAllocs()
			for b.Loop() {
				if !again {
					p.byGroup = map[*tstore.Group][]shard.Placement{}
				}
				p.options(shard.Options{}, cgs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ns/target")
		})
	}
}

// Per-target overrides by reserved labels: on every collector, pinned to
// one (the ring places it while that one is away, or nowhere with
// PinFallback none), with replicas of its own, or isolated on a collector
// of its own; a bad count is ignored and explained.
func TestOverrides(t *testing.T) {
	for _, fallback := range []string{"", PinFallbackNone} {
		synctest.Test(t, func(t *testing.T) {
			g := &targetgroup.Group{Source: "cmdb"}
			for i := range 30 {
				g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.0.0.%d:9100", i))})
			}
			g.Targets = append(g.Targets,
				model.LabelSet{model.AddressLabel: "ksm:8080", LabelEvery: "true"},
				model.LabelSet{model.AddressLabel: "pinned:9100", LabelPin: "c"},
				model.LabelSet{model.AddressLabel: "double:9100", LabelReplicas: "2"},
				model.LabelSet{model.AddressLabel: "bad:9100", LabelReplicas: "two"},
				model.LabelSet{model.AddressLabel: "heavy:9100", LabelIsolate: "true"})
			h := start(t, Job{Targets: targets.Static{g}, PinFallback: fallback}, Options{})
			owners := func() map[string][]string {
				out := map[string][]string{}
				h.out.mu.Lock()
				defer h.out.mu.Unlock()
				for id, gs := range h.out.last {
					for _, og := range gs {
						for _, tg := range og.Targets {
							out[string(tg[model.AddressLabel])] = append(out[string(tg[model.AddressLabel])], id)
						}
					}
				}
				for _, ids := range out {
					slices.Sort(ids)
				}
				return out
			}
			h.members("a", "b", "c", "d")
			o := owners()
			if !slices.Equal(o["ksm:8080"], []string{"a", "b", "c", "d"}) || !slices.Equal(o["pinned:9100"], []string{"c"}) ||
				len(o["double:9100"]) != 2 || len(o["bad:9100"]) != 1 || len(o["10.0.0.1:9100"]) != 1 {
				t.Fatalf("owners %v", o)
			}
			if len(o["heavy:9100"]) != 1 {
				t.Fatalf("isolated on %v", o["heavy:9100"])
			}
			for addr, ids := range o { // alone, but for the target on every collector and the pinned one
				if slices.Contains(ids, o["heavy:9100"][0]) && addr != "heavy:9100" && addr != "ksm:8080" && addr != "pinned:9100" {
					t.Fatalf("%s shares %s with the isolated target", addr, o["heavy:9100"][0])
				}
			}
			if v := testutil.ToFloat64(h.s.m.isolated.WithLabelValues("node", "alone")); v != 1 {
				t.Fatalf("promshard_isolated_targets alone %v", v)
			}
			if snap, _ := h.s.Snapshot("node"); !reflect.DeepEqual(snap.Placement, PlacementCounts{Every: 1, Replicas: 1, Isolate: 1,
				Pinned: map[string]int{"c": 1}}) || snap.Placement.Overrides() != 4 {
				t.Fatalf("Snapshot.Placement %+v", snap.Placement)
			}
			e, err := h.s.Explain("node", "bad:9100")
			if err != nil || !strings.Contains(e.Why, `__promshard_replicas__ "two" is not a count from 1: ignored`) {
				t.Fatalf("explain: %+v %v", e, err)
			}
			if e, _ := h.s.Explain("node", "pinned:9100"); !strings.Contains(e.Why, "pinned to c") {
				t.Fatalf("explain: %+v", e)
			}
			h.members("a", "b", "d") // the pinned collector is away
			o = owners()
			if fallback == PinFallbackNone {
				snap, _ := h.s.Snapshot("node")
				if len(o["pinned:9100"]) != 0 || !slices.Contains(snap.Assignment.Unplaced, "pinned:9100") {
					t.Fatalf("pinned, fallback none, its collector away: on %v, unplaced %v", o["pinned:9100"], snap.Assignment.Unplaced)
				}
			} else if len(o["pinned:9100"]) != 1 {
				t.Fatalf("pinned, its collector away: on %v, want the ring's one", o["pinned:9100"])
			}
			if !slices.Equal(o["ksm:8080"], []string{"a", "b", "d"}) {
				t.Fatalf("every collector: %v", o["ksm:8080"])
			}
		})
	}
	if err := (Job{PinFallback: "maybe"}).validatePlacement(); err == nil || !strings.Contains(err.Error(), `Job.PinFallback "maybe"`) {
		t.Fatalf("bad PinFallback: %v", err)
	}
}
