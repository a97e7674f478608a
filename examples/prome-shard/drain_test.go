package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/watch"
)

// TestDrainAndFailedCheck: a collector put in Consul maintenance, and one
// whose check fails while its Prometheus runs on, ends up scraping nothing,
// with every target scraped by exactly one collector; the drain loses no
// scrape (the hand-off); when it is healthy again the first assignment
// returns. In central mode each collector's file is pushed into the
// collector's own directory by a command (no shared directory); in self
// mode each copy writes its own collector's file.
func TestDrainAndFailedCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	t.Run("central, pushed files", func(t *testing.T) { drainAndFail(t, false) })
	t.Run("self", func(t *testing.T) { drainAndFail(t, true) })
}

func drainAndFail(t *testing.T, self bool) {
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	base := t.TempDir()
	cs := startCollectors(t, client, "pushed", 3, func(id string) string {
		if self {
			return filepath.Join(base, id+".json")
		}
		os.MkdirAll(filepath.Join(base, id), 0o755)
		return filepath.Join(base, id, "targets.json")
	}, func(string) watch.Check { return watch.Check{Type: watch.CheckTTL, TTL: time.Hour} })
	ttl := func(id, status string) {
		if err := client.Agent().UpdateTTLOpts("service:"+id, "", status, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cs {
		ttl(c.id, api.HealthPassing)
	}
	targets := testenv.ScrapeTargets(t, 30)
	push := fmt.Sprintf("d=%s/{{.ID}} && cp {{.File}} $d/.targets.tmp && mv $d/.targets.tmp $d/targets.json", base)
	out, reload := t.TempDir(), fmt.Sprintf("{method: command, command: {args: [sh, -c, %q]}}", push)
	if self {
		out, reload = base, "{method: none}"
	}
	cfg := writeConfig(t, fmt.Sprintf(`consul: {address: %q}
jobs:
  - name: node
    collectors: {consul_service: pushed}
    targets: {static: [{targets: [%s]}]}
    output: {dir: %q}
    reload: %s
`, agent.Addr, strings.Join(targets, ", "), out, reload))
	if self {
		for _, c := range cs {
			startBinary(t, buildBinary(t), "--config.file", cfg, "--member", c.id)
		}
	} else {
		startBinary(t, buildBinary(t), "--config.file", cfg)
	}
	first := waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)

	for _, step := range []struct {
		name        string
		out, back   func()
		noGapWanted bool
	}{
		{"maintenance", func() {
			if err := client.Agent().EnableServiceMaintenance("c1", "drain"); err != nil {
				t.Fatal(err)
			}
		}, func() {
			if err := client.Agent().DisableServiceMaintenance("c1"); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"failed check", func() { ttl("c1", api.HealthCritical) }, func() { ttl("c1", api.HealthPassing) }, false},
	} {
		stopSampling := countUnscraped(cs, "node", targets)
		start := time.Now()
		step.out()
		// c1 runs on but scrapes nothing of the job; everything else once.
		err := testenv.WaitFor(60*time.Second, 250*time.Millisecond, func() error {
			if n, err := activeTargets(cs[0], "node"); err != nil || n != 0 {
				return fmt.Errorf("c1 still has %d active targets (%v)", n, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		emptied := time.Since(start)
		got := waitScraped(t, cs[1:], "node", targets, 1, 60*time.Second, nil)
		if n, _ := activeTargets(cs[0], "node"); n != 0 || len(got) != len(targets) {
			t.Fatalf("%s: c1 has %d targets again", step.name, n)
		}
		waitScraped(t, cs, "node", targets, 1, 30*time.Second, nil) // nobody scrapes twice
		unscraped := stopSampling()
		t.Logf("%s: c1 scraped nothing %v after; unscraped target-seconds meanwhile %.2f",
			step.name, emptied.Round(100*time.Millisecond), float64(unscraped)/4)
		if step.noGapWanted && unscraped != 0 {
			t.Fatalf("%s: %d target-samples unscraped during a drain with the hand-off", step.name, unscraped)
		}
		step.back()
		waitScraped(t, cs, "node", targets, 1, 90*time.Second, first)
	}
}
