package promshard

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/promshard/promshard/shard"
)

// Simulating a collector's removal gives the moves that removing it then
// makes; a saved /api/v1/assignment simulates the same offline; the HTTP
// endpoint answers the same.
func TestSimulateThenDoIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{Shard: shard.Options{Replicas: 2}}, Options{})
		h.members("a", "b", "c", "d", "e")
		change, err := ParseChange([]string{"c"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		sim, err := h.s.Simulate(context.Background(), "node", change, 0)
		if err != nil {
			t.Fatal(err)
		}
		if sim.Moved == 0 || sim.Targets != 100 || sim.After.Members != 4 {
			t.Fatalf("simulation: %+v", sim)
		}

		rec := serve(h.s, "/api/v1/assignment")
		saved, err := ReadAssignment(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		offline, err := saved["node"].Simulate(change, 0)
		if err != nil || !reflect.DeepEqual(offline.Moves, sim.Moves) || !reflect.DeepEqual(offline.Loads, sim.Loads) {
			t.Fatalf("from the saved assignment: %+v, %v; live: %+v", offline, err, sim)
		}
		rec = serve(h.s, "/api/v1/simulate?remove=c")
		var overHTTP map[string]*shard.Simulation
		if err := json.Unmarshal(rec.Body.Bytes(), &overHTTP); err != nil || !reflect.DeepEqual(overHTTP["node"].Moves, sim.Moves) {
			t.Fatalf("/api/v1/simulate: %s (%v)", rec.Body, err)
		}

		h.members("a", "b", "d", "e")
		snap, _ := h.s.Snapshot("node")
		d := snap.Last.Diff
		if d.Moved != sim.Moved || d.Members["c"].Lost != sim.Moved {
			t.Fatalf("real: %d moved, c lost %d; simulated %d", d.Moved, d.Members["c"].Lost, sim.Moved)
		}
		for _, m := range sim.Moves {
			if m.From != "c" || d.Members[m.To].Gained != m.Targets {
				t.Fatalf("simulated move %+v; really %s gained %d", m, m.To, d.Members[m.To].Gained)
			}
		}
		for _, l := range sim.Loads {
			if got := snap.Assignment.Count(l.ID); got != l.After {
				t.Fatalf("%s: simulated %d after, really %d", l.ID, l.After, got)
			}
		}
		var b strings.Builder
		if err := WriteSimulation(&b, "node", sim); err != nil || !strings.Contains(b.String(), "would move") {
			t.Fatalf("table: %q %v", b.String(), err)
		}
	})
}

func TestParseChangeErrors(t *testing.T) {
	for _, tc := range []struct {
		add, weight []string
		want        string
	}{
		{[]string{"x:0"}, nil, `add x:0: weight "0": want 1 to`},
		{[]string{"x:abc"}, nil, `add x:abc: weight "abc"`},
		{nil, []string{"x"}, `weight "x": want ID=WEIGHT`},
		{nil, []string{"x=99999999"}, `weight x=99999999: weight "99999999"`},
	} {
		if _, err := ParseChange(nil, tc.add, tc.weight); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want %q", tc.add, tc.weight, err, tc.want)
		}
	}
	c, err := ParseChange([]string{"a"}, []string{"x", "y:3"}, []string{"b=2"})
	if err != nil || len(c.Add) != 2 || c.Add[1].Weight != 3 || c.Weight["b"] != 2 || c.Remove[0] != "a" {
		t.Fatalf("%+v %v", c, err)
	}
	s, err := New([]Job{{Name: "node", Targets: newProvider(1), Outputs: []Output{&output{}}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := serve(s, "/api/v1/simulate?add=x:0")
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "weight") {
		t.Fatalf("bad query: %d %s", rec.Code, rec.Body)
	}
}
