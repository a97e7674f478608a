package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/shard"
)

// TestBalanceBySeries runs balance: by series for real: three Prometheus
// collectors, targets that expose 5,000, 100 and 10 series, two of the
// heavy ones on one collector by count. Once the costs are read, the
// collectors' series are within 1.2× of each other, and so are their
// prometheus_tsdb_head_series after a start with empty storage. Then a collector dies
// and its targets go to the survivors within their max_series; when a
// second dies, what does not fit under the last one's cap is left
// unplaced: the metric and the audit's orphans say so, and the survivor
// stays under its cap.
func TestBalanceBySeries(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	out := t.TempDir()
	cs, static := staticCollectors(t, out, "bal", 3)
	// Three heavy targets, two of which count placement puts together.
	ring, err := shard.New(shard.DefaultKind, []shard.Member{{ID: "c1"}, {ID: "c2"}, {ID: "c3"}})
	if err != nil {
		t.Fatal(err)
	}
	cands := testenv.SeriesTargets(t, 5000, 5000, 5000, 5000)
	byOwner := map[string][]string{} // four targets, three collectors: two share one
	for _, a := range cands {
		id := shard.Lookup(ring, a, 1)[0].ID
		byOwner[id] = append(byOwner[id], a)
	}
	var heavy []string
	for _, as := range byOwner {
		if len(as) >= 2 && heavy == nil {
			heavy = slices.Clone(as[:2])
		}
	}
	for _, a := range cands {
		if len(heavy) < 3 && !slices.Contains(heavy, a) {
			heavy = append(heavy, a)
		}
	}
	light := testenv.SeriesTargets(t, 100, 100, 100, 100, 100, 100, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10)
	targets := append(heavy, light...) // 15,720 series: 5,240 a collector
	series := map[string]int{}
	for i, a := range targets {
		series[a] = []int{5000, 5000, 5000, 100, 100, 100, 100, 100, 100}[min(i, 8)]
		if i >= 9 {
			series[a] = 10
		}
	}
	seriesOf := func(addrs []string) (n int) {
		for _, a := range addrs {
			n += series[a]
		}
		return n
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := fmt.Sprintf(`audit: {interval: 2s}
jobs:
  - name: bal
    collectors: {static: [%s], probe: http, probe_interval: 1s}
    targets: {static: [{targets: [%s]}]}
    output: {dir: %q}
    reload: {method: none}
    balance: {by: series, epsilon: 0.05, settle: 3s, interval: 2s, window: 5m, max_move_fraction: 1}
    capacity: {max_series: 11000}
`, static, strings.Join(targets, ", "), out)
	bin := startBinary(t, buildBinary(t), "--config.file", writeConfig(t, cfg), "--web.listen-address", listen)

	waitScraped(t, cs, "bal", targets, 1, 60*time.Second, nil)
	live := `count({job="bal"})` // series scraped now: stale series of moved targets are gone
	samples := `sum(scrape_samples_post_metric_relabeling{job="bal"})`
	byCount, _ := perCollector(cs, samples)
	var seen map[string]float64
	if err := testenv.WaitFor(90*time.Second, time.Second, func() error {
		got, err := perCollector(cs, live)
		if err != nil {
			return err
		}
		if seen = got; maxOverMin(got) > 1.2 {
			return fmt.Errorf("series per collector %v: max/min %.2f", got, maxOverMin(got))
		}
		return nil
	}); err != nil {
		t.Fatalf("by series: %v (by count: %v)", err, byCount)
	}
	// Which targets make a collector heavy: each collector's heaviest is
	// one of the three heavy targets, and nearly all of its series.
	asg, err := assignment(listen)
	if err != nil {
		t.Fatal(err)
	}
	for id, a := range asg["bal"] {
		if len(a.Heaviest) == 0 || !slices.Contains(heavy, a.Heaviest[0].Target) || a.Heaviest[0].Series < 4000 || a.Heaviest[0].Share < 0.8 {
			t.Fatalf("%s: heaviest targets %+v, want one of %v first with most of its series", id, a.Heaviest, heavy)
		}
	}
	// Sizing: 15,720 series within 11,000 a collector need two, plus one of
	// headroom.
	_, raw, err := testenv.HTTPGet(context.Background(), "http://"+listen+"/api/v1/assignment")
	var sized map[string]struct {
		Needed int `json:"collectors_needed"`
	}
	if err != nil || json.Unmarshal(raw, &sized) != nil || sized["bal"].Needed != 3 {
		t.Fatalf("collectors_needed %+v (%v)", sized, err)
	}
	// A collector's head keeps the series of the targets that moved away
	// from it until it is compacted, hours later. To read head series that
	// are only the balanced assignment's, the collectors restart with empty
	// storage while prome-shard is paused (so that it sees no failure).
	if err := bin.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		c.prom.Reset()
	}
	if err := bin.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitScraped(t, cs, "bal", targets, 1, 60*time.Second, nil)
	head := map[string]float64{}
	if err := testenv.WaitFor(30*time.Second, time.Second, func() error {
		var sum float64
		for _, c := range cs {
			v, err := testenv.Metric(context.Background(), c.prom.Addr, "prometheus_tsdb_head_series")
			if err != nil {
				return err
			}
			head[c.id], sum = v, sum+v
		}
		if sum < 15720 { // every target scraped at least once
			return fmt.Errorf("head series %v: %v in all, want at least 15,720", head, sum)
		}
		if maxOverMin(head) > 1.2 {
			return fmt.Errorf("head series %v: max/min %.2f", head, maxOverMin(head))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("series per collector: by count %v (max/min %.2f), by series %v (max/min %.2f); head series after a fresh start %v (max/min %.2f)",
		byCount, maxOverMin(byCount), seen, maxOverMin(seen), head, maxOverMin(head))

	// c3 dies: the survivors take its targets within 11,000 series each
	// (one gets two heavy targets).
	cs[2].prom.Kill()
	cs[2].up.Store(false)
	waitScraped(t, cs, "bal", targets, 1, 60*time.Second, nil)
	withinCaps := func() error {
		asg, err := assignment(listen)
		if err != nil {
			return err
		}
		for id, m := range asg["bal"] {
			if n := seriesOf(m.Targets); n > 11000 {
				return fmt.Errorf("%s is assigned %d series, over its cap of 11,000", id, n)
			}
		}
		got, err := perCollector(cs, samples)
		for id, n := range got {
			if n > 11000 { // for a moment after a reload, a dropped target's last scrape still counts
				return fmt.Errorf("%s scrapes %v samples, over its cap of 11,000", id, n)
			}
		}
		return err
	}
	if err := testenv.WaitFor(30*time.Second, 500*time.Millisecond, withinCaps); err != nil {
		t.Fatalf("after c3 died: %v", err)
	}

	// c2 dies too: 15,720 series do not fit in c1's 11,000. What does not
	// fit is left unplaced, not pushed onto c1.
	cs[1].prom.Kill()
	cs[1].up.Store(false)
	metric := func(name string) float64 {
		v, _ := testenv.Metric(context.Background(), listen, name)
		return v
	}
	if err := testenv.WaitFor(60*time.Second, 500*time.Millisecond, func() error {
		if n := metric(`promshard_unplaced_targets{shard_job="bal"}`); n == 0 {
			return fmt.Errorf("promshard_unplaced_targets %v", n)
		}
		if n := metric(`promshard_audit_targets{shard_job="bal",state="orphan"}`); n == 0 {
			return fmt.Errorf("the audit reports %v orphans", n)
		}
		unplaced := int(metric(`promshard_unplaced_targets{shard_job="bal"}`))
		if who, err := scrapers(cs, "bal"); err != nil || len(who) != len(targets)-unplaced {
			return fmt.Errorf("c1 scrapes %d targets (%v), want all %d placed", len(who), err, len(targets)-unplaced)
		}
		return withinCaps()
	}); err != nil {
		t.Fatal(err)
	}
	last, _ := perCollector(cs, samples)
	t.Logf("one collector left: %v targets unplaced, %v orphans in the audit, the last collector scrapes %v samples",
		metric(`promshard_unplaced_targets{shard_job="bal"}`), metric(`promshard_audit_targets{shard_job="bal",state="orphan"}`), last["c1"])
}
