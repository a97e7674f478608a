package shard_test

import (
	"fmt"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/shard"
)

// A ring is built once per member set. Lookups are lock-free and, with the
// default ring, do not allocate.
func ExampleNew() {
	ring, err := shard.New(shard.DefaultKind, []shard.Member{
		{ID: "prom-a:9090"}, {ID: "prom-b:9090"}, {ID: "prom-c:9090"},
	})
	if err != nil {
		panic(err)
	}
	// Where does one target go, with two replicas?
	for _, m := range shard.Lookup(ring, "10.0.0.7:9100", 2) {
		fmt.Println(m.ID)
	}
	// Output:
	// prom-b:9090
	// prom-a:9090
}

// Assign splits target groups between the members. Every member gets an
// entry, so an empty one can still be written as an empty file.
func ExampleAssign() {
	ring, _ := shard.New(shard.DefaultKind, []shard.Member{{ID: "prom-a:9090"}, {ID: "prom-b:9090"}})
	pool := []*targetgroup.Group{{
		Source: "nodes",
		Labels: model.LabelSet{"env": "prod"},
		Targets: []model.LabelSet{
			{model.AddressLabel: "10.0.0.1:9100"},
			{model.AddressLabel: "10.0.0.2:9100"},
			{model.AddressLabel: "10.0.0.3:9100"},
			{model.AddressLabel: "10.0.0.4:9100"},
		},
	}}
	a, err := shard.Assign(ring, pool, shard.Options{})
	if err != nil {
		panic(err)
	}
	for _, m := range a.Members {
		for _, g := range a.GroupsOf(m.ID) {
			fmt.Println(m.ID, g.Labels, g.Targets)
		}
	}

	// prom-b leaves: only its targets move.
	ring2, _ := shard.New(shard.DefaultKind, []shard.Member{{ID: "prom-a:9090"}})
	b, _ := shard.Assign(ring2, pool, shard.Options{})
	d := shard.Compare(a, b)
	fmt.Printf("moved %d, unchanged %d, prom-a gained %d\n", d.Moved, d.Unchanged, d.Members["prom-a:9090"].Gained)
	// Output:
	// prom-a:9090 {env="prod"} [{__address__="10.0.0.4:9100"}]
	// prom-b:9090 {env="prod"} [{__address__="10.0.0.2:9100"} {__address__="10.0.0.1:9100"} {__address__="10.0.0.3:9100"}]
	// moved 3, unchanged 1, prom-a gained 3
}

// Placement by cost: one target costs four times as much as each other.
// By count its member is above the bound; by cost that member takes one
// other target, and each member carries 500 series.
func ExampleAssign_costs() {
	ring, _ := shard.New(shard.KindRendezvous, []shard.Member{{ID: "a"}, {ID: "b"}, {ID: "c"}})
	g := &targetgroup.Group{}
	costs := map[string]uint64{}
	for i := range 12 {
		addr := fmt.Sprintf("10.0.0.%d:9100", i)
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(addr)})
		costs[addr] = 100
	}
	costs["10.0.0.0:9100"] = 400
	byCount, _ := shard.Assign(ring, []*targetgroup.Group{g}, shard.Options{})
	opts := shard.Options{Costs: shard.CostTable(costs)}
	fmt.Println("by count, above the bound:", shard.Overloaded(byCount, opts))
	byCost, _ := shard.Assign(ring, []*targetgroup.Group{g}, opts)
	fmt.Println("by cost, above the bound:", shard.Overloaded(byCost, opts))
	for _, m := range byCost.Members {
		fmt.Println(m.ID, byCost.Count(m.ID), "targets,", byCost.Cost[m.ID], "series")
	}
	// Output:
	// by count, above the bound: [b]
	// by cost, above the bound: []
	// a 5 targets, 500 series
	// b 2 targets, 500 series
	// c 5 targets, 500 series
}

// Placement decides per target: here one is left out (as a relabelling
// would drop it), one is placed on every member, one is pinned, and one
// prefers zone b for its first replica.
func ExampleAssign_placement() {
	ring, _ := shard.New(shard.DefaultKind, []shard.Member{
		{ID: "a1", Domain: "a"}, {ID: "a2", Domain: "a"}, {ID: "b1", Domain: "b"},
	})
	pool := []*targetgroup.Group{{Source: "nodes", Targets: []model.LabelSet{
		{model.AddressLabel: "canary:9100"},
		{model.AddressLabel: "ksm:8080"},
		{model.AddressLabel: "db:9187"},
		{model.AddressLabel: "web-b:9100"},
	}}}
	rules := map[string]shard.Placement{
		"canary:9100": {Drop: true},
		"ksm:8080":    {Every: true},
		"db:9187":     {Pin: "a2"},
		"web-b:9100":  {Zone: "b"},
	}
	a, err := shard.Assign(ring, pool, shard.Options{Placement: func(g *targetgroup.Group, i int) shard.Placement {
		return rules[string(g.Targets[i][model.AddressLabel])]
	}})
	if err != nil {
		panic(err)
	}
	fmt.Println("targets:", a.Targets)
	for _, m := range a.Members {
		var addrs []string
		for _, g := range a.GroupsOf(m.ID) {
			for _, t := range g.Targets {
				addrs = append(addrs, string(t[model.AddressLabel]))
			}
		}
		fmt.Println(m.ID, addrs)
	}
	// Output:
	// targets: 3
	// a1 [ksm:8080]
	// a2 [db:9187 ksm:8080]
	// b1 [ksm:8080 web-b:9100]
}
