package promshard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/watch"
)

// promStub is a collector's Prometheus API: it scrapes what the output
// gave its member, minus what the test drops.
type promStub struct {
	mu   sync.Mutex
	drop map[string]bool
	srv  *httptest.Server
}

func newPromStub(t *testing.T, id string, out *output) *promStub {
	p := &promStub{drop: map[string]bool{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		out.mu.Lock()
		var active []map[string]any
		for _, g := range out.last[id] {
			for _, t := range g.Targets {
				addr := string(t[model.AddressLabel])
				p.mu.Lock()
				dropped := p.drop[addr]
				p.mu.Unlock()
				if !dropped {
					active = append(active, map[string]any{"discoveredLabels": map[string]string{"__address__": addr},
						"scrapePool": "node", "health": "up", "lastScrape": time.Now()})
				}
			}
		}
		out.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"activeTargets": active}})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// The Sharder audits after its reshard and on its interval, serves the
// report, shows who scrapes a target in explain, and repairs a collector
// that stays wrong.
func TestSharderAudit(t *testing.T) {
	out, rl, src := &output{}, newReloader(), newSource()
	stubs := map[string]*promStub{"a": newPromStub(t, "a", out), "b": newPromStub(t, "b", out)}
	s, err := New([]Job{{Name: "node", Targets: newProvider(20), Outputs: []Output{out}, Reloader: rl}}, Options{
		Audit:        AuditOptions{Options: &audit.Options{Grace: time.Nanosecond}, Interval: 20 * time.Millisecond, RepairAfter: 100 * time.Millisecond},
		CollectorURL: func(m watch.Member) string { return stubs[m.ID].srv.URL },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx, src) }()
	defer func() { cancel(); <-done }()
	src.sets <- members("a", "b")

	report := func(cond func(*audit.Report) bool) *audit.Report {
		t.Helper()
		var last *audit.Report
		err := testenv.WaitFor(10*time.Second, 10*time.Millisecond, func() error {
			snap, _ := s.Snapshot("node")
			if last = snap.Audit; last == nil || !cond(last) {
				return fmt.Errorf("audit %+v", last)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return last
	}
	r := report(func(r *audit.Report) bool { return r.OK() && r.Counts[audit.OK] == 20 })
	if len(r.Unreachable) != 0 {
		t.Fatalf("unreachable %v", r.Unreachable)
	}

	// Collector a stops scraping one of its targets: missing and orphan.
	out.mu.Lock()
	victim := string(out.last["a"][0].Targets[0][model.AddressLabel])
	other := string(out.last["b"][0].Targets[0][model.AddressLabel])
	out.mu.Unlock()
	reloadsBefore := rl.count("a")
	stubs["a"].mu.Lock()
	stubs["a"].drop[victim] = true
	stubs["a"].mu.Unlock()
	r = report(func(r *audit.Report) bool { return r.Counts[audit.Orphan] == 1 })
	if got := r.Filter(audit.Missing); len(got) != 1 || got[0].Address != victim || !slices.Equal(got[0].Intended, []string{"a"}) {
		t.Fatalf("missing %+v", got)
	}
	// The snapshot holds the report (web serves it as /api/v1/audit).
	snap, _ := s.Snapshot("node")
	if got := snap.Audit.Filter(audit.Orphan); len(got) != 1 || got[0].Address != victim {
		t.Fatalf("orphans in the snapshot: %+v", got)
	}
	if by := snap.Audit.Scrapes(other); len(by) != 1 || by[0].Collector != "b" {
		t.Fatalf("who scrapes %s: %+v", other, by)
	}

	// Wrong for longer than AuditRepairAfter: a is reloaded.
	if err := testenv.WaitFor(10*time.Second, 10*time.Millisecond, func() error {
		if rl.count("a") <= reloadsBefore {
			return fmt.Errorf("a reloaded %d times", rl.count("a"))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// scrapeGaps counts targets with fewer scrapers than assigned (one only a
// silent collector holds, one not yet scraped, included), and with more
// beyond a planned hand-off.
func TestScrapeGaps(t *testing.T) {
	up := func(id string) audit.Scrape { return audit.Scrape{Collector: id, Health: "up"} }
	rep := &audit.Report{Problems: []audit.Target{
		{Address: "a:1", States: []audit.State{audit.Missing, audit.Orphan}, Intended: []string{"c1"}},
		{Address: "b:1", States: []audit.State{audit.Missing}, Intended: []string{"c1", "c2"}, Scrapes: []audit.Scrape{up("c1")}},
		{Address: "c:1", States: []audit.State{audit.Extra}, Intended: []string{"c1"}, Scrapes: []audit.Scrape{up("c1"), up("c2")}},
		{Address: "d:1", States: []audit.State{audit.InTransit}, Intended: []string{"c1"}, Scrapes: []audit.Scrape{up("c1"), up("c3")}},
		{Address: "e:1", States: []audit.State{audit.Unknown}, Intended: []string{"c4"}}, // c4 did not answer
		{Address: "f:1", States: []audit.State{audit.InTransit}, Intended: []string{"c2"}, // not scraped yet
			Scrapes: []audit.Scrape{{Collector: "c2", Health: "unknown"}}},
	}}
	if fewer, more := scrapeGaps(rep, map[string]bool{"d:1": true}); fewer != 4 || more != 1 {
		t.Fatalf("fewer %d, more %d; want 4 and 1", fewer, more)
	}
	// A hand-off under way: written for old and new owners, scraped by the old one.
	rep = &audit.Report{Problems: []audit.Target{{Address: "g:1", States: []audit.State{audit.InTransit}, Intended: []string{"c1", "c2"},
		Scrapes: []audit.Scrape{up("c1"), {Collector: "c2", Health: "unknown"}}}}}
	if fewer, more := scrapeGaps(rep, map[string]bool{"g:1": true}); fewer != 0 || more != 0 {
		t.Fatalf("a hand-off under way: fewer %d, more %d", fewer, more)
	}
}
