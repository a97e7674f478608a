package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/audit"
)

// fakeProm serves /api/v1/targets as Prometheus 2.42 does, from what the
// test says it scrapes: pool -> address -> health.
type fakeProm struct {
	mu      sync.Mutex
	targets map[string]map[string]string
	srv     *httptest.Server
}

func newFakeProm(t testing.TB) *fakeProm {
	f := &fakeProm{targets: map[string]map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/targets" {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		body := answer(f.targets)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeProm) scrape(pool string, health string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.targets[pool] == nil {
		f.targets[pool] = map[string]string{}
	}
	for _, a := range addrs {
		f.targets[pool][a] = health
	}
}

func (f *fakeProm) drop(pool string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range addrs {
		delete(f.targets[pool], a)
	}
}

// answer renders an /api/v1/targets answer in Prometheus 2.42's shape; the
// collector's relabelling has rewritten instance, which the audit must not
// read.
func answer(targets map[string]map[string]string) []byte {
	type active struct {
		DiscoveredLabels map[string]string `json:"discoveredLabels"`
		Labels           map[string]string `json:"labels"`
		ScrapePool       string            `json:"scrapePool"`
		ScrapeURL        string            `json:"scrapeUrl"`
		GlobalURL        string            `json:"globalUrl"`
		LastError        string            `json:"lastError"`
		LastScrape       time.Time         `json:"lastScrape"`
		Duration         float64           `json:"lastScrapeDuration"`
		Health           string            `json:"health"`
		ScrapeInterval   string            `json:"scrapeInterval"`
		ScrapeTimeout    string            `json:"scrapeTimeout"`
	}
	var as []active
	for pool, ts := range targets {
		for addr, health := range ts {
			a := active{
				DiscoveredLabels: map[string]string{"__address__": addr, "__metrics_path__": "/metrics", "__scheme__": "http",
					"__scrape_interval__": "15s", "__scrape_timeout__": "10s", "job": pool, "team": "audit"},
				Labels:     map[string]string{"instance": "renamed-" + addr, "job": pool, "team": "audit"},
				ScrapePool: pool, ScrapeURL: "http://" + addr + "/metrics", GlobalURL: "http://" + addr + "/metrics",
				LastScrape: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Duration: 0.002, Health: health,
				ScrapeInterval: "15s", ScrapeTimeout: "10s",
			}
			if health == "down" {
				a.LastError = "connection refused"
			}
			as = append(as, a)
		}
	}
	b, _ := json.Marshal(map[string]any{"status": "success", "data": map[string]any{"activeTargets": as, "droppedTargets": []any{}}})
	return b
}

func groups(addrs ...string) []*targetgroup.Group {
	g := &targetgroup.Group{Source: "s", Labels: model.LabelSet{"team": "audit"}}
	for _, a := range addrs {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	return []*targetgroup.Group{g}
}

func newAuditor(t *testing.T, grace time.Duration, reg prometheus.Registerer) *audit.Auditor {
	a, err := audit.New(audit.Options{Grace: grace, Timeout: 2 * time.Second, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func addrsOf(ts []audit.Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Address)
	}
	return out
}

func wantStates(t *testing.T, r *audit.Report, want map[audit.State][]string) {
	t.Helper()
	for _, s := range audit.States() {
		if s == audit.OK {
			continue
		}
		if got := addrsOf(r.Filter(s)); !slices.Equal(got, want[s]) {
			t.Errorf("%s: %v, want %v", s, got, want[s])
		}
		if r.Counts[s] != len(want[s]) {
			t.Errorf("count %s = %d, want %d", s, r.Counts[s], len(want[s]))
		}
	}
}

// Every class, from recorded answers: missing and orphan, extra, down; a
// target of another scrape pool is ignored; relabelled instance labels do
// not matter.
func TestStates(t *testing.T) {
	c1, c2, c3 := newFakeProm(t), newFakeProm(t), newFakeProm(t)
	c1.scrape("node", "up", "h1:9100", "h2:9100")
	c1.scrape("other", "up", "h4:9100") // another scrape job on c1
	c2.scrape("node", "up", "h3:9100", "h5:9100")
	c3.scrape("node", "up", "h5:9100")
	c3.scrape("node", "down", "h6:9100")
	c3.scrape("node", "up", "h9:9100") // in nobody's share
	job := audit.Job{Name: "node", Assignment: map[string][]*targetgroup.Group{
		"c1": groups("h1:9100", "h2:9100"), "c2": groups("h3:9100", "h4:9100"), "c3": groups("h5:9100", "h6:9100"),
	}, Collectors: []audit.Collector{{ID: "c1", URL: c1.srv.URL}, {ID: "c2", URL: c2.srv.URL}, {ID: "c3", URL: c3.srv.URL}}}
	reg := prometheus.NewRegistry()
	a := newAuditor(t, time.Nanosecond, reg)
	r, err := a.Audit(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	// The first audit sees every target as just assigned.
	wantStates(t, r, map[audit.State][]string{audit.InTransit: {"h4:9100", "h5:9100", "h6:9100", "h9:9100"}})
	r, _ = a.Audit(context.Background(), job)
	wantStates(t, r, map[audit.State][]string{
		audit.Missing: {"h4:9100"}, audit.Orphan: {"h4:9100"}, audit.Extra: {"h5:9100", "h9:9100"},
		audit.Down: {"h6:9100"},
	})
	if r.Counts[audit.OK] != 3 || r.Targets != 7 || r.OK() {
		t.Fatalf("ok %d of %d targets; OK() %v", r.Counts[audit.OK], r.Targets, r.OK())
	}
	if s := r.Scrapes("h5:9100"); len(s) != 2 || s[0].Collector != "c2" || s[1].Collector != "c3" {
		t.Fatalf("who scrapes h5: %+v", s)
	}
	if d := r.Filter(audit.Down); d[0].Scrapes[0].LastError != "connection refused" || d[0].Scrapes[0].LastScrape.IsZero() {
		t.Fatalf("down target: %+v", d)
	}
	if v := testutil.ToFloat64(mustVec(t, reg, "orphan")); v != 1 {
		t.Fatalf("promshard_audit_targets{state=orphan} = %v", v)
	}

	// Fixed: every target scraped where intended.
	c2.scrape("node", "up", "h4:9100")
	c2.drop("node", "h5:9100")
	c3.scrape("node", "up", "h6:9100")
	c3.drop("node", "h9:9100")
	r, _ = a.Audit(context.Background(), job)
	if !r.OK() || r.Counts[audit.OK] != 6 || len(r.Problems) != 0 {
		t.Fatalf("after the fix: %+v", r)
	}
}

func mustVec(t *testing.T, reg *prometheus.Registry, state string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "promshard_audit_targets" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == state {
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
					g.Set(m.GetGauge().GetValue())
					return g
				}
			}
		}
	}
	t.Fatalf("no promshard_audit_targets{state=%q}", state)
	return nil
}

// A collector that does not answer makes its targets unknown, never orphan,
// and is named with its error.
func TestUnreachableCollector(t *testing.T) {
	c1 := newFakeProm(t)
	c1.scrape("node", "up", "h1:9100")
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	job := audit.Job{Name: "node", Assignment: map[string][]*targetgroup.Group{
		"c1": groups("h1:9100"), "c2": groups("h2:9100", "h3:9100"),
	}, Collectors: []audit.Collector{{ID: "c1", URL: c1.srv.URL}, {ID: "c2", URL: dead.URL}}}
	reg := prometheus.NewRegistry()
	a := newAuditor(t, time.Nanosecond, reg)
	a.Audit(context.Background(), job)
	r, err := a.Audit(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	wantStates(t, r, map[audit.State][]string{audit.Unknown: {"h2:9100", "h3:9100"}})
	if !strings.Contains(r.Unreachable["c2"], "c2") || len(r.Unreachable) != 1 {
		t.Fatalf("unreachable: %v", r.Unreachable)
	}
	if n := testutil.CollectAndCount(reg, "promshard_audit_errors_total"); n != 1 {
		t.Fatalf("%d error series", n)
	}
}

// A target whose collectors changed is in transit for the grace period,
// then wrong if the collectors still disagree.
func TestGrace(t *testing.T) {
	c1, c2 := newFakeProm(t), newFakeProm(t)
	c1.scrape("node", "up", "h1:9100", "h2:9100")
	c2.scrape("node", "up", "h3:9100")
	cs := []audit.Collector{{ID: "c1", URL: c1.srv.URL}, {ID: "c2", URL: c2.srv.URL}}
	before := map[string][]*targetgroup.Group{"c1": groups("h1:9100", "h2:9100"), "c2": groups("h3:9100")}
	after := map[string][]*targetgroup.Group{"c1": groups("h1:9100"), "c2": groups("h2:9100", "h3:9100")}
	for _, tc := range []struct {
		grace time.Duration
		gens  [2]uint64 // Generation of before and after; 0 is unknown
		want  map[audit.State][]string
	}{
		{time.Hour, [2]uint64{}, map[audit.State][]string{audit.InTransit: {"h2:9100"}}},
		{time.Hour, [2]uint64{1, 2}, map[audit.State][]string{audit.InTransit: {"h2:9100"}}},
		{time.Nanosecond, [2]uint64{}, map[audit.State][]string{audit.Missing: {"h2:9100"}, audit.Extra: {"h2:9100"}}},
		{time.Nanosecond, [2]uint64{1, 2}, map[audit.State][]string{audit.Missing: {"h2:9100"}, audit.Extra: {"h2:9100"}}},
	} {
		a := newAuditor(t, tc.grace, nil)
		b4 := audit.Job{Name: "node", Assignment: before, Collectors: cs, Generation: tc.gens[0]}
		af := audit.Job{Name: "node", Assignment: after, Collectors: cs, Generation: tc.gens[1]}
		a.Audit(context.Background(), b4)
		a.Audit(context.Background(), b4)
		r, _ := a.Audit(context.Background(), af)
		if tc.grace == time.Nanosecond {
			r, _ = a.Audit(context.Background(), af)
		}
		wantStates(t, r, tc.want)
	}
}

func TestOptionsAndJobErrors(t *testing.T) {
	for _, o := range []audit.Options{{Timeout: -1}, {Concurrency: -1}, {Grace: -1}} {
		if _, err := audit.New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	a := newAuditor(t, 0, nil)
	if a.Grace() != audit.DefaultGrace {
		t.Fatalf("grace %v", a.Grace())
	}
	if _, err := a.Audit(context.Background(), audit.Job{}); err == nil {
		t.Fatal("a job without a name was audited")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Audit(ctx, audit.Job{Name: "x", Collectors: []audit.Collector{{ID: "c", URL: "http://127.0.0.1:1"}}}); err == nil {
		t.Fatal("an audit with a cancelled context succeeded")
	}
}

// A huge answer (100k targets, about 50 MB) is read whole and right.
func TestHugeAnswer(t *testing.T) {
	c := newFakeProm(t)
	var addrs []string
	for i := range 100_000 {
		addrs = append(addrs, fmt.Sprintf("10.%d.%d.%d:9100", i>>16, i>>8&255, i&255))
	}
	c.scrape("node", "up", addrs...)
	a, _ := audit.New(audit.Options{Timeout: time.Minute}) // the stub renders 50 MB of JSON per answer
	got, err := a.Read(context.Background(), audit.Collector{ID: "c1", URL: c.srv.URL}, "node")
	if err != nil || len(got) != len(addrs) || got[addrs[99_999]].Health != "up" {
		t.Fatalf("%d targets, %v", len(got), err)
	}
	if _, err := a.Read(context.Background(), audit.Collector{ID: "c1", URL: "ftp://x"}, "node"); err == nil {
		t.Fatal("an ftp URL was read")
	}
}

// Targets the assignment left unplaced are orphans while nobody scrapes
// them, from the first audit on (nobody is about to take them), and extra
// where a collector still does; one that has a collector is judged by it.
func TestUnplacedAreOrphans(t *testing.T) {
	c1 := newFakeProm(t)
	c1.scrape("node", "up", "h1:9100", "h3:9100")
	job := audit.Job{Name: "node", Assignment: map[string][]*targetgroup.Group{"c1": groups("h1:9100", "h4:9100")},
		Unplaced:   []string{"h2:9100", "h3:9100", "h4:9100"},
		Collectors: []audit.Collector{{ID: "c1", URL: c1.srv.URL}}}
	reg := prometheus.NewRegistry()
	a := newAuditor(t, time.Hour, reg)
	r, err := a.Audit(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	wantStates(t, r, map[audit.State][]string{audit.Orphan: {"h2:9100"},
		audit.InTransit: {"h3:9100", "h4:9100"}}) // within the grace after start
	a = newAuditor(t, time.Nanosecond, prometheus.NewRegistry())
	a.Audit(context.Background(), job)
	r, _ = a.Audit(context.Background(), job)
	wantStates(t, r, map[audit.State][]string{audit.Orphan: {"h2:9100", "h4:9100"}, audit.Missing: {"h4:9100"},
		audit.Extra: {"h3:9100"}})
	if r.Targets != 4 || r.OK() {
		t.Fatalf("%d targets, OK %v", r.Targets, r.OK())
	}
	if v := testutil.ToFloat64(mustVec(t, reg, "orphan")); v != 1 {
		t.Fatalf("promshard_audit_targets{state=orphan} = %v", v)
	}
}
