package promshard

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// fakeScrapes is a hand-off confirmer: a collector the test marks as
// scraping reports every target its output holds, scraped just now.
type fakeScrapes struct {
	mu       sync.Mutex
	out      *output
	scraping map[string]bool
}

func (f *fakeScrapes) set(id string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scraping[id] = on
}

func (f *fakeScrapes) Read(_ context.Context, c audit.Collector, _ string) (map[string]audit.Scrape, error) {
	f.mu.Lock()
	on := f.scraping[c.ID]
	f.mu.Unlock()
	if !on {
		return nil, fmt.Errorf("%s: connection refused", c.ID)
	}
	got := map[string]audit.Scrape{}
	f.out.mu.Lock()
	defer f.out.mu.Unlock()
	for _, a := range flat(f.out.last[c.ID]) {
		got[a] = audit.Scrape{Collector: c.ID, Health: "up", LastScrape: time.Now()}
	}
	return got, nil
}

// holders maps each target to the members whose output holds it.
func (h *harness) holders() map[string][]string {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	out := map[string][]string{}
	for _, id := range slices.Sorted(maps.Keys(h.out.last)) {
		for _, a := range flat(h.out.last[id]) {
			out[a] = append(out[a], id)
		}
	}
	return out
}

func (h *harness) pendingHandoffs() int {
	snap, _ := h.s.Snapshot("node")
	return snap.Handoffs
}

func startHandoff(t *testing.T, replicas int) (*harness, *fakeScrapes) {
	t.Helper()
	f := &fakeScrapes{scraping: map[string]bool{}}
	h := startWith(t, Job{Shard: shard.Options{Replicas: replicas}}, Options{Handoff: HandoffOptions{Enabled: true}},
		func(h *harness) { h.s.reader = f })
	f.out = h.out
	return h, f
}

// countHolders checks that every target is held by want members, and
// returns how many are held by more.
func countHolders(t *testing.T, h *harness, want int) (over int) {
	t.Helper()
	got := h.holders()
	if len(got) != 100 {
		t.Fatalf("%d targets held, want 100", len(got))
	}
	for a, ids := range got {
		switch {
		case len(ids) < want:
			t.Fatalf("target %s held by %v, want at least %d", a, ids, want)
		case len(ids) > want:
			over++
		}
	}
	return over
}

func TestHandoffConfirmed(t *testing.T) {
	for _, r := range []int{1, 2} {
		t.Run(fmt.Sprintf("R=%d", r), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, f := startHandoff(t, r)
				h.members("a", "b")
				before := h.holders()
				if over := countHolders(t, h, r); over != 0 {
					t.Fatalf("%d targets over-held before any move", over)
				}
				// c joins: what moves to c stays with its old owner too.
				h.members("a", "b", "c")
				moving := h.pendingHandoffs()
				if moving == 0 || countHolders(t, h, r) != moving {
					t.Fatalf("%d hand-offs, %d targets over-held", moving, countHolders(t, h, r))
				}
				// A refresh and a provider change meanwhile keep them.
				time.Sleep(DefaultRefreshInterval + time.Second)
				h.prov.changed()
				synctest.Wait()
				if got := countHolders(t, h, r); got != moving {
					t.Fatalf("after a reshard %d over-held, want %d", got, moving)
				}
				// c scrapes: within a poll the old owners let go.
				f.set("c", true)
				time.Sleep(handoffPoll + time.Millisecond)
				synctest.Wait()
				if over := countHolders(t, h, r); over != 0 {
					t.Fatalf("%d targets still over-held after c scraped", over)
				}
				after := h.holders()
				for a, ids := range after {
					if !slices.Contains(ids, "c") && !slices.Equal(ids, before[a]) {
						t.Fatalf("target %s moved from %v to %v, not to c", a, before[a], ids)
					}
				}
				if v := testutil.ToFloat64(h.s.m.handoffs.WithLabelValues("node", "confirmed")); int(v) != moving {
					t.Fatalf("confirmed %v, want %d", v, moving)
				}
			})
		})
	}
}

// TestRefreshSkippedWhileHandoffsPend: a timer refresh over the same
// inputs while hand-offs are pending plans nothing new and is skipped (at a
// million targets a plan costs a second); a hand-off that ends makes the
// next pass write the outputs without the kept targets.
func TestRefreshSkippedWhileHandoffsPend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f := startHandoff(t, 1)
		h.members("a", "b")
		h.members("a", "b", "c")
		moving := h.pendingHandoffs()
		if moving == 0 {
			t.Fatal("c joined and nothing was handed over")
		}
		time.Sleep(DefaultRefreshInterval + time.Second)
		synctest.Wait()
		snap, _ := h.s.Snapshot("node")
		if !snap.Last.Skipped || snap.Last.Reason != reasonTimer {
			t.Fatalf("the refresh with %d hand-offs pending: reason %v, skipped %v; want a skipped timer pass",
				moving, snap.Last.Reason, snap.Last.Skipped)
		}
		if got := countHolders(t, h, 1); got != moving {
			t.Fatalf("after the skipped refresh %d over-held, want %d", got, moving)
		}
		f.set("c", true)
		time.Sleep(handoffPoll + time.Millisecond)
		synctest.Wait()
		if over := countHolders(t, h, 1); over != 0 {
			t.Fatalf("%d targets still over-held after c scraped", over)
		}
		if snap, _ := h.s.Snapshot("node"); snap.Last.Skipped {
			t.Fatal("the pass after the hand-offs ended was skipped")
		}
	})
}

func TestHandoffTimeoutAndCancel(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, _ := startHandoff(t, 1)
			h.members("a", "b")
			h.members("a", "b", "c")
			moving := h.pendingHandoffs()
			time.Sleep(defaultHandoffTimeout - 2*handoffPoll)
			synctest.Wait()
			if countHolders(t, h, 1) != moving {
				t.Fatal("a hand-off ended before its timeout")
			}
			time.Sleep(3 * handoffPoll)
			synctest.Wait()
			if over := countHolders(t, h, 1); over != 0 {
				snap, _ := h.s.Snapshot("node")
				t.Fatalf("%d over-held after the timeout; pending %d, last %q skipped %v, timeouts %v", over, snap.Handoffs, snap.Last.Reason, snap.Last.Skipped,
					testutil.ToFloat64(h.s.m.handoffs.WithLabelValues("node", "timeout")))
			}
			if v := testutil.ToFloat64(h.s.m.handoffs.WithLabelValues("node", "timeout")); int(v) != moving {
				t.Fatalf("timeouts %v, want %d", v, moving)
			}
		})
	})
	t.Run("new owner dies", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, _ := startHandoff(t, 1)
			h.members("a", "b")
			before := h.holders()
			h.members("a", "b", "c")
			h.members("a", "b") // c dies: back to the old assignment at once
			if got := h.holders(); !maps.EqualFunc(got, before, slices.Equal) {
				t.Fatal("after the new owner died the assignment is not the old one")
			}
			if h.pendingHandoffs() != 0 {
				t.Fatal("hand-offs still pending")
			}
		})
	})
	t.Run("old owner dies", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, _ := startHandoff(t, 1)
			h.members("a", "b")
			h.members("a", "b", "c")
			h.members("b", "c") // a dies: nothing to wait for; b's hand-offs to c go on
			j := h.s.byName["node"]
			j.hand.mu.Lock()
			pending := maps.Clone(j.hand.pending)
			j.hand.mu.Unlock()
			for _, ho := range pending {
				if !slices.Equal(ho.keep, []string{"b"}) || !slices.Equal(ho.wait, []string{"c"}) {
					t.Fatalf("a hand-off from %v to %v after a died", ho.keep, ho.wait)
				}
			}
			if over := countHolders(t, h, 1); over != len(pending) {
				t.Fatalf("%d over-held, %d hand-offs from b", over, len(pending))
			}
			for _, ids := range h.holders() {
				if slices.Contains(ids, "a") {
					t.Fatal("a dead collector still holds targets")
				}
			}
		})
	})
	t.Run("failover is immediate", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, _ := startHandoff(t, 1)
			h.members("a", "b", "c")
			h.members("a", "b") // c leaves: its targets move at once
			if over := countHolders(t, h, 1); over != 0 || h.pendingHandoffs() != 0 {
				t.Fatalf("a failover made %d hand-offs", h.pendingHandoffs())
			}
		})
	})
}

// withKept adds each kept target in a group of its own source and labels,
// after the member's others, the same way whatever the map order.
func TestWithKept(t *testing.T) {
	g1 := &tstore.Group{Source: "s1", Labels: model.LabelSet{"env": "a"}, Targets: []string{"h2", "h1"}}
	g2 := &tstore.Group{Source: "s2", Targets: []string{"h3"}} // c's, which must not grow
	pending := map[targetAt]*handoff{
		{"s2", "h3"}: {group: g2, at: 0, keep: []string{"a"}},
		{"s1", "h2"}: {group: g1, at: 0, keep: []string{"a", "b"}},
		{"s1", "h1"}: {group: g1, at: 1, keep: []string{"a"}},
	}
	for range 5 {
		out := withKept(map[string][]*tstore.Group{"a": {}, "b": {}, "c": {g2}}, pending)
		if got := fmt.Sprint(flatc(out["a"]), len(out["a"]), flatc(out["b"]), flatc(out["c"]), len(g2.Targets), len(g1.Targets)); got != "[h1 h2 h3] 2 [h2] [h3] 1 2" {
			t.Fatal(got)
		}
	}
}

// A process that starts over the files of another (a takeover, a restart)
// reads what the collectors hold from them, so that a target moving at
// that moment is handed over, kept by its old owner, not dropped at once.
func TestHandoffFromWhatIsOnDisk(t *testing.T) {
	dir := t.TempDir()
	newDir := func() *filesd.Dir {
		d, err := filesd.NewDir(filesd.DirOptions{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	synctest.Test(t, func(t *testing.T) {
		first := start(t, Job{Outputs: []Output{newDir()}}, Options{})
		first.members("a", "b")
		first.stop() // it dies while c is away
		f := &fakeScrapes{scraping: map[string]bool{}}
		next := startWith(t, Job{Outputs: []Output{newDir()}}, Options{Handoff: HandoffOptions{Enabled: true}},
			func(h *harness) { h.s.reader = f })
		next.members("a", "b", "c") // c is back as the next process starts
		snap, _ := next.s.Snapshot("node")
		c := len(snap.Assignment.Groups["c"])
		if c == 0 || snap.Handoffs == 0 {
			t.Fatalf("c assigned %d groups, %d hand-offs pending: the move was not handed over", c, snap.Handoffs)
		}
		held, err := newDir().Held()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, id := range []string{"a", "b", "c"} {
			for _, g := range held[id] {
				for _, tg := range g.Targets {
					seen[string(tg[model.AddressLabel])]++
				}
			}
		}
		if len(seen) != 100 {
			t.Fatalf("the files hold %d targets, want 100", len(seen))
		}
		if kept := snap.Handoffs; kept == 0 {
			t.Fatal("no target kept by its old owner")
		}
	})
}

// The hand-off plan leaves out the collectors whose output holds the very
// groups they get: over random old and new owners, with some collectors
// unchanged, it plans what a plan that compares every collector plans.
func TestPlanSkipsUnchangedCollectors(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	ids := []string{"a", "b", "c", "d", "e"}
	alive := []watch.Member{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}, {ID: "e"}}
	for round := range 50 {
		targets := make([]model.LabelSet, 60)
		for i := range targets {
			targets[i] = model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d", i))}
		}
		// owners gives each target up to two random owners among pick.
		owners := func(pick []string) map[string][]*targetgroup.Group {
			out := map[string][]*targetgroup.Group{}
			for _, id := range pick {
				out[id] = []*targetgroup.Group{{Source: "s", Targets: nil}}
			}
			for _, tg := range targets {
				for _, id := range slices.Compact([]string{pick[rng.IntN(len(pick))], pick[rng.IntN(len(pick))]}) {
					out[id][0].Targets = append(out[id][0].Targets, tg)
				}
			}
			return out
		}
		written := owners(ids)
		next := owners(ids[2:]) // c, d, e
		same := ids[:rng.IntN(3)]
		for _, id := range same { // unchanged: the very groups; they also keep their targets
			next[id] = written[id]
		}
		// The control: the unchanged collectors given equal, not the same, groups.
		control := maps.Clone(next)
		for _, id := range same {
			control[id] = []*targetgroup.Group{{Source: "s", Targets: slices.Clone(written[id][0].Targets)}}
		}
		cv := compactor{}
		plan := func(next map[string][]*targetgroup.Group) (string, string) {
			hs := newHandoffs("node", "", time.Minute, m, slog.New(slog.DiscardHandler))
			out, kept := hs.plan(cv.each(written), cv.each(next), fmt.Sprint(round), alive, time.Unix(0, 0), false, shard.Diff{})
			var pend []string
			for k, h := range hs.pending {
				pend = append(pend, fmt.Sprint(k, h.keep, h.wait))
			}
			slices.Sort(pend)
			var got []string
			for _, id := range slices.Sorted(maps.Keys(out)) {
				got = append(got, fmt.Sprint(id, flatc(out[id])))
			}
			return fmt.Sprint(kept, pend), fmt.Sprint(got)
		}
		p1, g1 := plan(next)
		p2, g2 := plan(control)
		if p1 != p2 || g1 != g2 {
			t.Fatalf("round %d, unchanged %v:\nplanned %s\n%s\nwant %s\n%s", round, same, p1, g1, p2, g2)
		}
	}
}

// TestPlanComparesOnlyUnmatchedGroups holds the plan, which compares only
// the targets of groups a collector has on one side, to one that compares
// every target, over random moves between collectors, with groups shared
// from one side to the other as the assignment shares them, and a second
// plan over the first's pending hand-offs.
func TestPlanComparesOnlyUnmatchedGroups(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 9))
	ids := []string{"a", "b", "c", "d", "e", "f"}
	groupLabels := []model.LabelSet{{"env": "prod"}, {"env": "dev"}, nil}
	var alive []watch.Member
	for _, id := range ids[:5] {
		alive = append(alive, watch.Member{ID: id})
	}
	planned, narrowed := 0, 0
	for round := range 100 {
		targets := make([]model.LabelSet, 80)
		for i := range targets {
			targets[i] = model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d", i))}
		}
		groupOf := func(i int) (string, model.LabelSet) { return fmt.Sprint("s", i%3), groupLabels[i%len(groupLabels)] }
		// assign gives each target one or two owners among pick, and
		// reuses a collector's group of prev when it holds the same
		// targets (as a reshard shares what did not change).
		assign := func(pick []string, prev map[string][]*targetgroup.Group, move int) map[string][]*targetgroup.Group {
			out := map[string][]*targetgroup.Group{}
			for i, tg := range targets {
				var own []string
				if prev != nil && rng.IntN(100) >= move {
					for id, gs := range prev {
						if slices.Contains(pick, id) && slices.ContainsFunc(gs, func(g *targetgroup.Group) bool {
							return slices.ContainsFunc(g.Targets, func(x model.LabelSet) bool { return labels.Identity(x) == labels.Identity(tg) })
						}) {
							own = append(own, id)
						}
					}
				}
				if len(own) == 0 {
					own = slices.Compact([]string{pick[rng.IntN(len(pick))], pick[rng.IntN(len(pick))]})
				}
				src, ls := groupOf(i)
				for _, id := range own {
					k := slices.IndexFunc(out[id], func(g *targetgroup.Group) bool { return g.Source == src })
					if k < 0 {
						out[id] = append(out[id], &targetgroup.Group{Source: src, Labels: ls})
						k = len(out[id]) - 1
					}
					out[id][k].Targets = append(out[id][k].Targets, tg)
				}
			}
			for id, gs := range out { // the groups that did not change are the very ones
				for k, g := range gs {
					if i := slices.IndexFunc(prev[id], func(o *targetgroup.Group) bool {
						return o.Source == g.Source && slices.EqualFunc(o.Targets, g.Targets, func(x, y model.LabelSet) bool { return labels.Identity(x) == labels.Identity(y) })
					}); i >= 0 {
						gs[k] = prev[id][i]
					}
				}
			}
			return out
		}
		written := assign(ids[:5], nil, 0)
		next := assign(ids[rng.IntN(2):], written, rng.IntN(30))
		then := assign(ids[rng.IntN(2):4], next, rng.IntN(30))
		fast := newHandoffs("node", "", time.Minute, m, slog.New(slog.DiscardHandler))
		ref := newHandoffs("node", "", time.Minute, m, slog.New(slog.DiscardHandler))
		ref.compareAll = true
		run := func(hs *handoffs, written, next map[string][]*tstore.Group, key string) (string, map[string][]*tstore.Group) {
			out, kept := hs.plan(written, next, key, alive, time.Unix(int64(round), 0), false, shard.Diff{})
			var pend, got []string
			for k, h := range hs.pending {
				pend = append(pend, fmt.Sprint(k, h.keep, h.wait, h.since.Unix()))
			}
			slices.Sort(pend)
			for _, id := range slices.Sorted(maps.Keys(out)) {
				for _, g := range out[id] {
					got = append(got, fmt.Sprint(id, g.Source, g.Labels, flatc([]*tstore.Group{g})))
				}
			}
			return fmt.Sprint(kept, pend, got), out
		}
		cv := compactor{}
		cw, cn := cv.each(written), cv.each(next)
		some, _ := unmatched(cw, cn, false)
		every, _ := unmatched(cw, cn, true)
		if len(some) < len(every) {
			narrowed++
		}
		f1, fout := run(fast, cw, cn, "1")
		r1, rout := run(ref, cw, cn, "1")
		planned += fast.count()
		if f1 != r1 {
			t.Fatalf("round %d, first plan:\n%s\nwant\n%s", round, f1, r1)
		}
		f2, _ := run(fast, fout, cv.each(then), "2")
		if r2, _ := run(ref, rout, cv.each(then), "2"); f2 != r2 {
			t.Fatalf("round %d, second plan:\n%s\nwant\n%s", round, f2, r2)
		}
	}
	if planned == 0 || narrowed == 0 {
		t.Fatalf("hand-offs planned %d, plans that compared fewer targets %d: the rounds test nothing", planned, narrowed)
	}
}
