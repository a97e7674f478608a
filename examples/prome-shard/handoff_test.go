package main

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/watch"
)

// recovery is what sampling every collector every 250 ms showed while a
// killed collector came back.
type recovery struct {
	unscraped  int           // target-samples with no up scraper
	overlapMax time.Duration // the longest a target had two up scrapers
	took       time.Duration // from the restart to the first assignment, settled
}

// runRecovery starts three collectors registered in Consul (1 s checks, 1 s
// scrapes) and prome-shard (central, or one copy per collector in self
// mode) with handoff, shards 60 targets at R=1, kills collector c1, waits
// for the failover, brings c1 back and samples through the recovery.
func runRecovery(t *testing.T, self bool, handoff string) (failover time.Duration, r recovery) {
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	out := t.TempDir()
	cs := startCollectors(t, client, "pool", 3, func(id string) string { return filepath.Join(out, id+".json") },
		func(string) watch.Check { return watch.Check{Interval: time.Second, Timeout: time.Second} })
	targets := testenv.ScrapeTargets(t, 60)
	cfg := writeConfig(t, fmt.Sprintf(`consul: {address: %q}
handoff: {mode: %s}
jobs:
  - name: node
    collectors: {consul_service: pool}
    targets: {static: [{targets: [%s]}]}
    output: {dir: %q}
`, agent.Addr, handoff, strings.Join(targets, ", "), out))
	if self {
		for _, c := range cs {
			startBinary(t, buildBinary(t), "--config.file", cfg, "--member", c.id)
		}
	} else {
		startBinary(t, buildBinary(t), "--config.file", cfg)
	}
	var before map[string]string
	err := testenv.WaitFor(60*time.Second, 250*time.Millisecond, func() error {
		before = waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
		for _, c := range cs {
			if !slices.Contains(slices.Collect(maps.Values(before)), c.id) {
				return fmt.Errorf("%s has no targets yet", c.id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	cs[0].prom.Kill()
	cs[0].up.Store(false)
	killed := time.Now()
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
	failover = time.Since(killed)

	overlapSince := map[string]time.Time{}
	cs[0].prom.Start()
	restarted := time.Now()
	cs[0].up.Store(true)
	stop := sample(cs, "node", func(got map[string][]string) {
		now := time.Now()
		for _, a := range targets {
			switch n := len(got[a]); {
			case n == 0:
				r.unscraped++
			case n > 1 && overlapSince[a].IsZero():
				overlapSince[a] = now
			case n == 1 && !overlapSince[a].IsZero():
				r.overlapMax = max(r.overlapMax, now.Sub(overlapSince[a]))
				overlapSince[a] = time.Time{}
			}
		}
	})
	waitScraped(t, cs, "node", targets, 1, 90*time.Second, before)
	r.took = time.Since(restarted)
	time.Sleep(2 * time.Second) // and a little after
	stop()
	return failover, r
}

// TestZeroGapRecovery: a killed collector comes back and takes its targets
// back from the survivors; with the hand-off no target is ever without an
// up scraper, in central and in self mode, and the failover is as fast as
// without it.
func TestZeroGapRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	for _, mode := range []struct {
		name string
		self bool
	}{{"central", false}, {"self", true}} {
		t.Run(mode.name, func(t *testing.T) {
			failover, r := runRecovery(t, mode.self, "overlap")
			t.Logf("handoff %s: failover %v; recovery %v: unscraped target-seconds %.2f, longest overlap %v",
				mode.name, failover.Round(10*time.Millisecond), r.took.Round(10*time.Millisecond),
				float64(r.unscraped)/4, r.overlapMax.Round(250*time.Millisecond))
			if r.unscraped != 0 {
				t.Fatalf("%d target-samples had no up scraper while c1 came back", r.unscraped)
			}
		})
	}
}

// Without the hand-off, for the README's comparison (make chaos).
func TestChaosRecoveryWithoutHandoff(t *testing.T) {
	chaos(t)
	for _, self := range []bool{false, true} {
		failover, r := runRecovery(t, self, "off")
		t.Logf("chaos: handoff off, self mode %v: failover %v; recovery %v: unscraped target-seconds %.2f",
			self, failover.Round(10*time.Millisecond), r.took.Round(10*time.Millisecond), float64(r.unscraped)/4)
	}
}
