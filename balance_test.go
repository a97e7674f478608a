package promshard

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/shard"
)

// fakeCosts answers Series with what the test sets.
type fakeCosts struct {
	mu    sync.Mutex
	costs map[string]uint64
	reads int
}

func (f *fakeCosts) Series(context.Context, []audit.Collector, string, time.Duration) (map[string]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return maps.Clone(f.costs), nil
}

func (f *fakeCosts) set(c map[string]uint64) {
	f.mu.Lock()
	f.costs = c
	f.mu.Unlock()
}

// skewed gives the harness's 100 targets costs: every tenth costs 10,000
// series, the others 100.
func skewed() map[string]uint64 {
	out := map[string]uint64{}
	for i := range 100 {
		c := uint64(100)
		if i%10 == 0 {
			c = 10_000
		}
		out[fmt.Sprintf("10.1.%d.%d:9100", i/250, i%250)] = c
	}
	return out
}

// heavyTailed gives the harness's 100 targets Pareto costs (α = 1.2, 1k
// and up), the same in every run.
func heavyTailed() map[string]uint64 {
	rng := rand.New(rand.NewPCG(1, 2))
	out := map[string]uint64{}
	for i := range 100 {
		out[fmt.Sprintf("10.1.%d.%d:9100", i/250, i%250)] = uint64(min(1e6, 1000/math.Pow(1-rng.Float64(), 1/1.2)))
	}
	return out
}

// loads is each member's series in a, by the costs.
func loads(a *shard.Assignment, costs map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for id, gs := range a.Groups {
		for _, g := range gs {
			for _, addr := range g.Targets {
				out[id] += costs[addr]
			}
		}
	}
	return out
}

func spreadOf(l map[string]uint64) float64 {
	lo, hi := uint64(1<<63), uint64(0)
	for _, v := range l {
		lo, hi = min(lo, v), max(hi, v)
	}
	return float64(hi) / float64(max(lo, 1))
}

func assignmentOf(t *testing.T, s *Sharder) *shard.Assignment {
	t.Helper()
	snap, err := s.Snapshot("node")
	if err != nil || snap.Assignment == nil {
		t.Fatalf("no assignment: %v", err)
	}
	return snap.Assignment
}

// By series: nothing moves until a collector has stayed above its bound
// for Settle; then the targets move and every collector is within it. A
// spike shorter than Settle moves nothing. A collector that dies moves its
// targets at once, by the costs in use.
func TestBalanceBySeries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := &fakeCosts{costs: skewed()}
		h := start(t, Job{Balance: Balance{By: BalanceBySeries, Settle: 5 * time.Minute, MaxMoveFraction: 1,
			Costs: fc}}, Options{RefreshInterval: time.Hour})
		synctest.Wait()
		h.members("a", "b", "c", "d", "e")
		byCount := assignmentOf(t, h.s)
		if byCount.Cost != nil {
			t.Fatal("placed by cost before any cost was read")
		}
		if s := spreadOf(loads(byCount, skewed())); s < 1.3 {
			t.Fatalf("the count assignment is already even (max/min %.2f): the test shows nothing", s)
		}
		time.Sleep(4*time.Minute + 30*time.Second)
		synctest.Wait()
		if a := assignmentOf(t, h.s); a != byCount {
			t.Fatal("targets moved before Settle")
		}
		if v := testutil.ToFloat64(h.s.m.overloaded.WithLabelValues("node")); v == 0 {
			t.Fatal("promshard_balance_overloaded_collectors is 0 while the counts are skewed")
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		bySeries := assignmentOf(t, h.s)
		snap, _ := h.s.Snapshot("node")
		if bySeries.Cost == nil || !strings.Contains(snap.Last.Reason.String(), "balance") {
			t.Fatalf("after Settle: costs %v, last reshard %q", bySeries.Cost, snap.Last.Reason)
		}
		if got := shard.Overloaded(bySeries, h.s.jobs[0].bal.placement(snap.Members, h.s.jobs[0].bal.table().placed)); len(got) != 0 {
			t.Fatalf("after balancing, above the bound: %v (loads %v)", got, loads(bySeries, skewed()))
		}
		t.Logf("max/min series: by count %.2f, by series %.2f", spreadOf(loads(byCount, skewed())),
			spreadOf(loads(bySeries, skewed())))

		// A spike of one tick: noticed, and nothing moves.
		spike := skewed()
		spike["10.1.0.1:9100"] = 1_000_000
		fc.set(spike)
		time.Sleep(time.Minute)
		synctest.Wait()
		fc.set(skewed())
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if a := assignmentOf(t, h.s); a != bySeries {
			t.Fatal("a spike shorter than Settle moved targets")
		}

		// e dies: only its targets move, at once, by the costs in use.
		h.members("a", "b", "c", "d")
		after := assignmentOf(t, h.s)
		if d := shard.Compare(bySeries, after); d.Moved < bySeries.Count("e") || d.Moved > 2*bySeries.Count("e") || after.Cost == nil {
			t.Fatalf("e left: %d moved, e had %d; by cost %v", d.Moved, bySeries.Count("e"), after.Cost != nil)
		}
	})
}

// MaxMoveFraction bounds the targets that move for load in one reshard
// (a single target's change of cost is never split: it is taken alone when
// it moves more); the next ticks go on until every collector is within its
// bound.
func TestBalanceMovesAFractionAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := &fakeCosts{costs: skewed()}
		var mu sync.Mutex // steps and last, written by the reshards
		var steps []string
		var last map[uint64]uint64
		var h *harness
		h = start(t, Job{Balance: Balance{By: BalanceBySeries, Settle: time.Minute, MaxMoveFraction: 0.04, Epsilon: 0.02, Costs: fc}},
			Options{RefreshInterval: time.Hour, OnReshard: func(r Report) {
				if !strings.Contains(r.Reason.String(), "balance") {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				now := h.s.jobs[0].bal.table().costs
				changed := 0
				for k, v := range now {
					if old, ok := last[k]; !ok || old != v {
						changed++
					}
				}
				if last != nil && r.Diff.Moved > 4 && changed != 1 {
					t.Errorf("a balancing reshard moved %d targets for %d changed costs", r.Diff.Moved, changed)
				}
				steps, last = append(steps, fmt.Sprintf("%d moved for %d costs", r.Diff.Moved, changed)), now
			}})
		synctest.Wait()
		h.members("a", "b", "c", "d", "e")
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		// Other targets turn heavy: many must move.
		fc.set(heavyTailed())
		mu.Lock()
		n := len(steps)
		mu.Unlock()
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(steps)-n < 2 {
			t.Fatalf("balancing reshards %v: want several after the costs changed", steps)
		}
		want := map[uint64]uint64{}
		for a, c := range heavyTailed() {
			want[shard.Hash(a)] = c
		}
		if !maps.Equal(h.s.jobs[0].bal.table().costs, want) {
			t.Fatalf("after %v, the costs measured are not all in use", steps)
		}
		t.Logf("balancing reshards: %v", steps)
	})
}

// The cap: when the survivors of a failure cannot take the dead
// collector's targets within their max_series, what does not fit is left
// unplaced (the metric, the audit's orphans); with Overcommit it goes to
// its usual collectors. A collector's max_series meta overrides the job's.
func TestCapacityGuard(t *testing.T) {
	for _, over := range []bool{false, true} {
		t.Run(fmt.Sprint("overcommit=", over), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := &fakeCosts{costs: skewed()} // 109,000 series in all
				h := start(t, Job{Balance: Balance{By: BalanceBySeries, Settle: time.Minute, MaxMoveFraction: 1,
					Capacity: Capacity{MaxSeries: 40_000, Overcommit: over}, Costs: fc},
					Guard: PartitionGuard{Share: 1}}, Options{RefreshInterval: time.Hour}) // collectors die together: the cap decides
				synctest.Wait()
				ms := members("a", "b", "c", "d", "e")
				ms[4].Meta = map[string]string{MaxSeriesMeta: "25000"}
				h.src.sets <- ms
				synctest.Wait()
				time.Sleep(3 * time.Minute)
				synctest.Wait()
				if a := assignmentOf(t, h.s); a.Cost == nil || len(a.Unplaced) != 0 || a.Cost["e"] > 25_000 {
					t.Fatalf("five collectors: by cost %v, unplaced %v", a.Cost, a.Unplaced)
				}
				h.src.sets <- ms[:2] // 80,000 of room for 109,000
				synctest.Wait()
				a := assignmentOf(t, h.s)
				unplaced := testutil.ToFloat64(h.s.m.unplaced.WithLabelValues("node"))
				if over {
					if len(a.Unplaced) != 0 || unplaced != 0 || a.Count("a")+a.Count("b") != 100 {
						t.Fatalf("overcommit: unplaced %v (metric %v), placed %d", a.Unplaced, unplaced, a.Count("a")+a.Count("b"))
					}
					return
				}
				if len(a.Unplaced) == 0 || unplaced != float64(len(a.Unplaced)) {
					t.Fatalf("no room: unplaced %v, metric %v", a.Unplaced, unplaced)
				}
				for id, l := range loads(a, skewed()) {
					if l > 40_000 {
						t.Fatalf("%s holds %d series over its cap of 40,000", id, l)
					}
				}
				if snap, _ := h.s.Snapshot("node"); !slices.Equal(snap.Assignment.Unplaced, a.Unplaced) ||
					snap.Assignment.Cost["a"] != a.Cost["a"] || snap.Assignment.Cost["a"] == 0 {
					t.Fatalf("snapshot: unplaced %v, a's series %d; want %v, %d", snap.Assignment.Unplaced,
						snap.Assignment.Cost["a"], a.Unplaced, a.Cost["a"])
				}
				aj := auditJob("node", "node", Snapshot{Assignment: a, Groups: a.Groups, Members: ms[:2]}, nil)
				if !slices.Equal(aj.Unplaced, a.Unplaced) {
					t.Fatalf("the audit is not told of the unplaced targets: %v", aj.Unplaced)
				}
			})
		})
	}
}

// costStore is a fakeElector that keeps cost tables (a BlobStore).
type costStore struct {
	*fakeElector
	mu    sync.Mutex
	table []byte
}

func (c *costStore) PublishBlob(ctx context.Context, _ string, table []byte) error {
	if err := c.Check(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.table = table
	c.mu.Unlock()
	return nil
}

func (c *costStore) ReadBlob(context.Context, string) ([]byte, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.table == nil {
		return nil, "", nil
	}
	return c.table, fmt.Sprintf("%x", c.table), nil
}

// The leader publishes the cost table it balanced with; a copy in self
// mode reads it, never reads collectors, and computes the same assignment
// (it agrees with the published epoch). Without a published table a copy
// in self mode places by count.
func TestCostTablePublishedAndRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &costStore{fakeElector: &fakeElector{}}
		fc, self := &fakeCosts{costs: skewed()}, &fakeCosts{}
		bal := Balance{By: BalanceBySeries, Settle: time.Minute, MaxMoveFraction: 1}
		bal.Costs = fc
		leader := start(t, Job{Balance: bal, Outputs: []Output{&output{}}}, Options{Elector: store, Store: store, RefreshInterval: time.Hour})
		bal.Costs = self
		follower := start(t, Job{Self: "b", Balance: bal}, Options{Elector: store, Store: store, RefreshInterval: time.Hour})
		synctest.Wait()
		store.lead(true)
		leader.members("a", "b", "c", "d", "e")
		follower.members("a", "b", "c", "d", "e")
		if a := assignmentOf(t, follower.s); a.Cost != nil {
			t.Fatal("self mode placed by cost before a table was published")
		}
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		la, fa := assignmentOf(t, leader.s), assignmentOf(t, follower.s)
		if la.Cost == nil || fa.Cost == nil || !maps.Equal(la.Cost, fa.Cost) || shard.Compare(la, fa).Moved != 0 {
			t.Fatalf("leader by cost %v, self mode %v", la.Cost, fa.Cost)
		}
		if snap, _ := follower.s.Snapshot("node"); !snap.Agrees {
			ls, _ := leader.s.Snapshot("node")
			for _, r := range ls.Recent {
				t.Logf("leader recent %v held %v skipped %v err %v members %d", r.Reason, r.Held, r.Skipped, r.Err, r.Members)
			}
			for _, r := range snap.Recent {
				t.Logf("recent %v held %v skipped %v err %v members %d", r.Reason, r.Held, r.Skipped, r.Err, r.Members)
			}
			t.Fatalf("self mode does not agree with epoch %+v", snap.Epoch)
		}
		self.mu.Lock()
		defer self.mu.Unlock()
		if self.reads != 0 {
			t.Fatalf("self mode read collectors %d times", self.reads)
		}
	})
}

func TestBalanceValidates(t *testing.T) {
	for b, want := range map[Balance]string{
		{By: "load"}:                                               "Job.Balance.By \"load\": want count or series",
		{By: BalanceBySeries, Epsilon: -1}:                         "Job.Balance.Epsilon -1",
		{By: BalanceBySeries, MaxMoveFraction: 2}:                  "Job.Balance.MaxMoveFraction 2",
		{By: BalanceBySeries, Settle: -time.Second}:                "must not be negative",
		{Capacity: Capacity{MaxSeries: 10}}:                        "Job.Balance.Capacity {MaxSeries:10 Overcommit:false}: caps series, so By must be series",
		{By: BalanceByCount, Capacity: Capacity{Overcommit: true}}: "By must be series",
		{By: BalanceBySeries, Interval: -time.Minute}:              "Interval -1m0s",
	} {
		_, err := New([]Job{{Name: "j", Targets: newProvider(1), Outputs: []Output{&output{}}, Balance: b}}, Options{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", b, err, want)
		}
	}
}

func TestCostTableCodec(t *testing.T) {
	in := map[uint64]uint64{0: 5, 1: 0, 1 << 63: 1 << 40, ^uint64(0): 7}
	out, err := decodeCosts(encodeCosts(in))
	if err != nil || !maps.Equal(in, out) {
		t.Fatalf("round trip: %v, %v", out, err)
	}
	b := encodeCosts(in)
	for n := range len(b) {
		if _, err := decodeCosts(b[:n]); err == nil {
			t.Fatalf("a table cut to %d of %d bytes was read", n, len(b))
		}
	}
	if _, err := decodeCosts(append(b, 0)); err == nil {
		t.Fatal("a table with a byte more was read")
	}
	if _, err := decodeCosts([]byte{2}); err == nil {
		t.Fatal("an unknown version was read")
	}
}

// A collector's max_series meta overrides the job's cap; one that is not a
// number is named once in the log and the job's cap applies.
func TestMaxSeriesMeta(t *testing.T) {
	var logs strings.Builder
	s, err := New([]Job{{Name: "j", Targets: newProvider(1), Outputs: []Output{&output{}},
		Balance: Balance{By: BalanceBySeries, Capacity: Capacity{MaxSeries: 500}, Costs: &fakeCosts{}}}},
		Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ms := members("a", "b", "c")
	ms[0].Meta = map[string]string{MaxSeriesMeta: "900"}
	ms[1].Meta = map[string]string{MaxSeriesMeta: "lots"}
	for range 3 {
		opts := s.jobs[0].bal.placement(ms, nil)
		if want := map[string]uint64{"a": 900, "b": 500, "c": 500}; !maps.Equal(opts.Capacity, want) {
			t.Fatalf("caps %v, want %v", opts.Capacity, want)
		}
	}
	if n := strings.Count(logs.String(), `max_series=lots`); n != 1 {
		t.Fatalf("the bad meta was logged %d times, want once:\n%s", n, logs.String())
	}
}

// Balance.Interval and Balance.Window have floors: each read is a range
// query to every collector.
func TestBalanceFloors(t *testing.T) {
	for _, b := range []Balance{
		{By: BalanceBySeries, Interval: time.Millisecond},
		{By: BalanceBySeries, Window: time.Second},
	} {
		if err := b.validate(); err == nil || !strings.Contains(err.Error(), "want at least") {
			t.Errorf("%+v: %v", b, err)
		}
	}
	if err := (Balance{By: BalanceBySeries, Interval: time.Second, Window: 10 * time.Second}).validate(); err != nil {
		t.Fatal(err)
	}
}

// The pool's size for its measured series: the load within the cap, plus
// one collector of headroom, or the biggest failure domain when spread.
func TestCollectorsNeeded(t *testing.T) {
	a := &shard.Assignment{Members: []shard.Member{{ID: "a"}, {ID: "b"}, {ID: "c"}},
		Cost: map[string]uint64{"a": 9000, "b": 9000, "c": 9000}}
	if n := collectorsNeeded(a, 10000); n != 4 { // 27,000 / 10,000 → 3, +1
		t.Fatalf("needed %d, want 4", n)
	}
	a.Members = []shard.Member{{ID: "a", Domain: "z1"}, {ID: "b", Domain: "z1"}, {ID: "c", Domain: "z2"}}
	if n := collectorsNeeded(a, 10000); n != 5 { // 3, + the two of zone z1
		t.Fatalf("spread over zones: needed %d, want 5", n)
	}
	if collectorsNeeded(a, 0) != 0 || collectorsNeeded(&shard.Assignment{}, 10) != 0 {
		t.Fatal("no cap or no series: want 0")
	}
}

// Simulate sizes a job balanced by series with a cap: how many collectors
// its measured series need after the change, and a removal that leaves
// too few says so.
func TestSimulateSizes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := &fakeCosts{costs: skewed()}
		var total uint64
		for _, c := range skewed() {
			total += c
		}
		maxSeries := total/3 + 1 // three collectors hold it, a fourth is the headroom
		h := start(t, Job{Balance: Balance{By: BalanceBySeries, Settle: time.Minute, MaxMoveFraction: 1, Costs: fc,
			Capacity: Capacity{MaxSeries: maxSeries, Overcommit: true}}}, Options{RefreshInterval: time.Hour})
		synctest.Wait()
		h.members("a", "b", "c", "d", "e")
		time.Sleep(3 * time.Minute) // the costs are read and in use
		synctest.Wait()
		if a := assignmentOf(t, h.s); a.Cost == nil {
			t.Fatal("not placed by series")
		}
		sim, err := h.s.Simulate(context.Background(), "node", shard.Change{Remove: []string{"e"}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if sim.CollectorsNeeded != 4 || sim.After.Members != 4 {
			t.Fatalf("remove e: %d collectors needed, %d after; want 4 and 4", sim.CollectorsNeeded, sim.After.Members)
		}
		sim, _ = h.s.Simulate(context.Background(), "node", shard.Change{Remove: []string{"d", "e"}}, 0)
		if sim.CollectorsNeeded != 4 || sim.After.Members != 3 {
			t.Fatalf("remove d and e: %d needed, %d after", sim.CollectorsNeeded, sim.After.Members)
		}
	})
}
