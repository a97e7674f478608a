package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/watch"
)

func problemAddrs(r *audit.Report, s audit.State) []string {
	var out []string
	for _, t := range r.Filter(s) {
		out = append(out, t.Address)
	}
	return out
}

// TestAuditAgainstRealCollectors: three real collectors, R=1, the binary's
// audit on. After the first reshard every target is ok; five targets
// removed from a collector's file by hand are exactly five missing and
// orphan; a target of another collector added by hand is extra; a killed
// collector's targets are never called orphan while it is still assigned,
// and after the reshard everything is ok again (the reshard also rewrites
// the hand-edited file).
func TestAuditAgainstRealCollectors(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	agent := testenv.StartConsul(t)
	targets := testenv.ScrapeTargets(t, 30)
	out := t.TempDir()
	os.MkdirAll(filepath.Join(out, "r1"), 0o755) // before Prometheus starts, so that its file SD watches it
	var cs []*collector
	var b strings.Builder
	fmt.Fprintf(&b, "refresh_interval: 1m\nconsul: {address: %q}\naudit: {interval: 500ms, grace: 3s}\n", agent.Addr)
	b.WriteString("jobs:\n  - name: r1\n    collectors:\n      consul_service: audited\n      check: {interval: 1s, timeout: 1s}\n      register:\n")
	for i := range 3 {
		id := fmt.Sprintf("collector-%d", i+1)
		c := newCollector(id, testenv.StartPrometheus(t, t.TempDir(), promConfig(out, id)))
		cs = append(cs, c)
		h, p := hostPortString(c.prom.Addr)
		fmt.Fprintf(&b, "        - {id: %s, address: %s, port: %s}\n", id, h, p)
	}
	fmt.Fprintf(&b, "    targets: {static: [{targets: [%s]}]}\n    output: {dir: %q}\n", strings.Join(targets, ", "), filepath.Join(out, "r1"))
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", writeConfig(t, b.String()), "--web.listen-address", listen)
	waitScraped(t, cs, "r1", targets, 1, 60*time.Second, nil)

	waitAudit := func(what string, cond func(r *audit.Report) error) *audit.Report {
		t.Helper()
		var last *audit.Report
		err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
			r, err := auditReport(listen, "r1")
			if err != nil {
				return err
			}
			last = r
			return cond(r)
		})
		if err != nil {
			t.Fatalf("%s: %v (last report: counts %v, unreachable %v)", what, err, last.Counts, last.Unreachable)
		}
		return last
	}
	waitAudit("all ok after the first reshard", func(r *audit.Report) error {
		if !r.OK() || r.Counts[audit.OK] != len(targets) || r.Counts[audit.InTransit] != 0 {
			return fmt.Errorf("counts %v", r.Counts)
		}
		return nil
	})

	// Five targets dropped from collector-1's file by hand.
	file1 := filepath.Join(out, "r1", "collector-1.json")
	var dropped []string
	editFile(t, file1, func(gs []*targetgroup.Group) []*targetgroup.Group {
		for _, g := range gs {
			for len(dropped) < 5 && len(g.Targets) > 0 {
				dropped = append(dropped, string(g.Targets[0][model.AddressLabel]))
				g.Targets = g.Targets[1:]
			}
		}
		return gs
	})
	if len(dropped) != 5 {
		t.Fatalf("collector-1 had %d targets, the test needs 5", len(dropped))
	}
	slices.Sort(dropped)
	waitAudit("five missing and orphan", func(r *audit.Report) error {
		if m, o := problemAddrs(r, audit.Missing), problemAddrs(r, audit.Orphan); !slices.Equal(m, dropped) || !slices.Equal(o, dropped) {
			return fmt.Errorf("missing %v, orphan %v, want %v", m, o, dropped)
		}
		return nil
	})

	// A target of collector-2 added to collector-1's file: extra.
	b2, _ := os.ReadFile(filepath.Join(out, "r1", "collector-2.json"))
	var gs2 []*targetgroup.Group
	if err := json.Unmarshal(b2, &gs2); err != nil || len(addresses(gs2)) == 0 {
		t.Fatalf("collector-2's file: %v", err)
	}
	stolen := addresses(gs2)[0]
	editFile(t, file1, func(gs []*targetgroup.Group) []*targetgroup.Group {
		return append(gs, &targetgroup.Group{Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(stolen)}}})
	})
	waitAudit("one extra", func(r *audit.Report) error {
		if e := problemAddrs(r, audit.Extra); !slices.Equal(e, []string{stolen}) || r.Counts[audit.Missing] != 5 {
			return fmt.Errorf("extra %v, want [%s]; missing %d", e, stolen, r.Counts[audit.Missing])
		}
		if s := r.Filter(audit.Extra)[0].Scrapes; len(s) != 2 {
			return fmt.Errorf("the extra target is scraped by %+v, want collector-1 and collector-2", s)
		}
		return nil
	})

	// collector-3 dies: while it is still assigned its targets are unknown,
	// never orphan; after the reshard all is ok.
	cs[2].prom.Kill()
	cs[2].up.Store(false)
	sawUnknown := false
	waitAudit("all ok after collector-3 died", func(r *audit.Report) error {
		if _, ok := r.Unreachable["collector-3"]; ok {
			for _, p := range r.Problems {
				if slices.Contains(p.Intended, "collector-3") {
					if slices.Contains(p.States, audit.Orphan) || !slices.Contains(p.States, audit.Unknown) {
						t.Errorf("a target of the unreachable collector-3 is %v, want unknown", p.States)
					}
					sawUnknown = true
				}
			}
		}
		if !r.OK() || r.Counts[audit.OK] != len(targets) {
			return fmt.Errorf("counts %v", r.Counts)
		}
		return nil
	})
	t.Logf("unknown targets seen while collector-3 was still assigned: %v", sawUnknown)
}

// The SLO counters against what is measured: three real collectors, the
// audit every second; a collector dies, then comes back through the
// hand-off. The target-seconds the audit
// counted as scraped by fewer collectors than assigned match, within an
// audit interval per target that moved, the ones a sampler of every
// collector's targets counted.
func TestUnscrapedSecondsMatchWhatIsSampled(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	out := t.TempDir()
	cs := startCollectors(t, client, "slo", 3, func(id string) string { return filepath.Join(out, id+".json") },
		func(string) watch.Check { return watch.Check{Interval: time.Second, Timeout: time.Second} })
	targets := testenv.ScrapeTargets(t, 30)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := writeConfig(t, fmt.Sprintf(`consul: {address: %q}
audit: {interval: 1s, grace: 1s}
jobs:
  - name: node
    collectors: {consul_service: slo}
    quorum: {min_members: 3, wait: 1m}
    targets: {static: [{targets: [%s]}]}
    output: {dir: %q}
`, agent.Addr, strings.Join(targets, ", "), out))
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen)
	before := waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
	moved := 0
	for _, id := range before {
		if id == cs[0].id {
			moved++
		}
	}
	counter := func() float64 { return metric(t, listen, "promshard_unscraped_target_seconds_total", "") }
	start := counter()
	stop := countUnscraped(cs, "node", targets)
	cs[0].prom.Kill()
	cs[0].up.Store(false)
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
	for range 2 { // two audits after every target is scraped again, so the counter has caught up
		at := metric(t, listen, "promshard_audit_last_run_timestamp_seconds", "")
		if err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
			if metric(t, listen, "promshard_audit_last_run_timestamp_seconds", "") == at {
				return errors.New("no new audit")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	sampled := float64(stop()) / 4
	counted := counter() - start
	t.Logf("a collector with %d targets killed: %.2f unscraped target-seconds sampled, %.2f counted by the audit", moved, sampled, counted)
	if d := counted - sampled; d > float64(moved) || d < -float64(moved) {
		t.Fatalf("the audit counted %.2f unscraped target-seconds, the sampler %.2f: more than %d apart (%d targets × the 1 s audit interval)",
			counted, sampled, moved, moved)
	}

	// It comes back: its targets are handed over. Nothing is unscraped,
	// and the planned overlap is not counted as scraped twice.
	start, doubled := counter(), metric(t, listen, "promshard_double_scraped_target_seconds_total", "")
	stop = countUnscraped(cs, "node", targets)
	var overlap atomic.Int64 // target-samples scraped by two collectors, planned or not
	stopOverlap := sample(cs, "node", func(got map[string][]string) {
		for _, a := range targets {
			if len(got[a]) > 1 {
				overlap.Add(1)
			}
		}
	})
	cs[0].prom.Start()
	cs[0].up.Store(true)
	waitScraped(t, cs, "node", targets, 1, 90*time.Second, before)
	if err := testenv.WaitFor(60*time.Second, 100*time.Millisecond, func() error {
		if h := metric(t, listen, "promshard_handoffs_pending", ""); h != 0 {
			return fmt.Errorf("%v hand-offs pending", h)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stopOverlap()
	sampled, counted = float64(stop())/4, counter()-start
	twice := metric(t, listen, "promshard_double_scraped_target_seconds_total", "") - doubled
	both := float64(overlap.Load()) / 4
	t.Logf("it came back through the hand-off: %.2f unscraped target-seconds sampled, %.2f counted; scraped twice: %.2f target-seconds sampled (the planned overlap included), %.2f counted beyond the plan",
		sampled, counted, both, twice)
	if sampled != 0 || counted > float64(moved) || twice > both+float64(moved) {
		t.Fatalf("during the hand-off: sampled %.2f, counted %.2f unscraped; scraped twice %.2f counted, %.2f sampled", sampled, counted, twice, both)
	}
}
