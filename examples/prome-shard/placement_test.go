package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/promshard/promshard/internal/testenv"
)

// relabel_configs before placing, end to end: a job whose rules drop half
// the targets places only the rest, no real collector scrapes a dropped
// one, and the rest, balanced (by series, all alike here), are spread
// evenly: max/mean of the scraped targets at most 1.1 over three
// collectors. The collectors' own scrape job does not drop them: only
// promshard's placement keeps them off. One more target, marked for every
// collector (__promshard_every__), is scraped by all three, and the audit
// finds every target as intended.
func TestRelabelDropsBeforePlacing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	out := t.TempDir()
	cs, static := staticCollectors(t, out, "node", 3)
	all := testenv.ScrapeTargets(t, 61)
	kept, dropped, every := all[:30], all[30:60], all[60]
	cfg := fmt.Sprintf(`audit: {interval: 2s}
jobs:
  - name: node
    collectors: {static: [%s], probe: http, probe_interval: 1s}
    targets:
      static:
        - {targets: [%s], labels: {tier: web}}
        - {targets: [%s], labels: {tier: batch}}
        - {targets: [%s], labels: {tier: web, __promshard_every__: "true"}}
    relabel_configs:
      - {source_labels: [tier], regex: batch, action: drop}
    balance: {by: series, epsilon: 0.05, settle: 3s, interval: 2s, window: 5m, max_move_fraction: 1}
    output: {dir: %q}
`, static, strings.Join(kept, ", "), strings.Join(dropped, ", "), every, out)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", writeConfig(t, cfg), "--web.listen-address", listen)
	waitScraped(t, cs, "node", kept, 1, 60*time.Second, nil)
	var counts map[string]int
	if err := testenv.WaitFor(90*time.Second, 500*time.Millisecond, func() error {
		got, err := scrapers(cs, "node")
		if err != nil {
			return err
		}
		counts = map[string]int{}
		if len(got[every]) != 3 {
			return fmt.Errorf("the target for every collector is scraped by %v", got[every])
		}
		for a, ids := range got {
			if slices.Contains(dropped, a) {
				return fmt.Errorf("dropped %s is scraped by %v", a, ids)
			}
			if a == every {
				continue
			}
			if len(ids) != 1 {
				return fmt.Errorf("%s scraped by %v", a, ids)
			}
			counts[ids[0]]++
		}
		for _, a := range kept {
			if len(got[a]) != 1 {
				return fmt.Errorf("%s scraped by %v", a, got[a])
			}
		}
		most := 0
		for _, n := range counts {
			most = max(most, n)
		}
		if len(counts) != 3 || float64(most)/10 > 1.1 {
			return fmt.Errorf("scraped targets per collector %v: max/mean %.2f", counts, float64(most)/10)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := assignedCount(listen, "node"); err != nil || n != 33 {
		t.Fatalf("%d placements (%v), want the 30 kept once and the one for every collector three times", n, err)
	}
	// The audit expects the one for every collector on all three, and
	// finds it so.
	if err := testenv.WaitFor(30*time.Second, 500*time.Millisecond, func() error {
		r, err := auditReport(listen, "node")
		if err != nil {
			return err
		}
		if !r.OK() || r.Targets != 31 {
			return fmt.Errorf("audit: %d targets, counts %v, problems %v", r.Targets, r.Counts, r.Problems)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if v := metric(t, listen, "promshard_relabel_dropped_targets", ""); v != 30 {
		t.Fatalf("promshard_relabel_dropped_targets %v, want 30", v)
	}
	t.Logf("scraped targets per collector: %v", counts)
}

// A heavy target marked __promshard_isolate__ ends up alone on its
// collector, end to end: that collector scrapes it and nothing else, and
// the other targets are scraped by the other two.
func TestIsolatedTargetAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	out := t.TempDir()
	cs, static := staticCollectors(t, out, "node", 3)
	all := testenv.ScrapeTargets(t, 21)
	light, heavy := all[:20], all[20]
	cfg := fmt.Sprintf(`handoff: {mode: off}
jobs:
  - name: node
    collectors: {static: [%s], probe: http, probe_interval: 1s}
    targets:
      static:
        - {targets: [%s]}
        - {targets: [%s], labels: {__promshard_isolate__: "true"}}
    output: {dir: %q}
`, static, strings.Join(light, ", "), heavy, out)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", writeConfig(t, cfg), "--web.listen-address", listen)
	got := waitScraped(t, cs, "node", all, 1, 60*time.Second, nil)
	own := got[heavy]
	for _, a := range light {
		if got[a] == own {
			t.Fatalf("%s shares %s with the isolated target", a, own)
		}
	}
	if v := metric(t, listen, "promshard_isolated_targets", `state="alone"`); v != 1 {
		t.Fatalf("promshard_isolated_targets{state=alone} %v", v)
	}
	t.Logf("the isolated target is alone on %s", own)
}
