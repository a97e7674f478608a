package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

func addrs(gs []*targetgroup.Group) []string {
	var out []string
	for _, g := range gs {
		for _, t := range g.Targets {
			out = append(out, string(t[model.AddressLabel]))
		}
	}
	return out
}

func TestHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, src := start(t, 100, promshard.Job{}, promshard.Options{})
		get := func(path string) (int, string) {
			rec := serve(s, path)
			return rec.Code, rec.Body.String()
		}
		if code, body := get("/-/ready"); code != 503 || !strings.Contains(body, "not resharded yet") {
			t.Fatalf("ready before the first reshard: %d %q", code, body)
		}
		src.send(members("a", "b", "c"))
		if code, _ := get("/-/ready"); code != 200 {
			t.Fatalf("ready: %d", code)
		}
		if code, body := get("/-/healthy"); code != 200 || body != "healthy\n" {
			t.Fatalf("healthy: %d %q", code, body)
		}
		snap, _ := s.Snapshot("node")
		owner := ""
		for id := range maps.Keys(snap.Assignment.Groups) {
			if slices.Contains(addrs(snap.Assignment.GroupsOf(id)), "10.1.0.7:9100") {
				owner = id
			}
		}
		code, body := get("/api/v1/explain?target=10.1.0.7:9100")
		if code != 200 || !strings.Contains(body, `"members": [`+"\n"+`      "`+owner+`"`) || !strings.Contains(body, `"in_pool": true`) {
			t.Fatalf("explain: %d %s (owner %s)", code, body, owner)
		}
		if code, body := get("/api/v1/assignment"); code != 200 || strings.Count(body, ":9100") != 100 {
			t.Fatalf("assignment: %d, %d targets", code, strings.Count(body, ":9100"))
		}
		if code, _ := get("/api/v1/explain?target=x&job=nope"); code != 404 {
			t.Fatalf("explain of an unknown job: %d", code)
		}
		if code, body := get("/sd/node/" + owner); code != 200 || !strings.Contains(body, "10.1.0.7:9100") {
			t.Fatalf("http_sd of %s: %d %s", owner, code, body)
		}
	})
}

// The status page lists at most 50 collectors a page however many there
// are, with links to the other pages, each bar with its count; a
// collector that left is an event; its links are relative.
func TestStatusPagePaginates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, src := start(t, 100, promshard.Job{}, promshard.Options{})
		var ids []string
		for i := range 120 {
			ids = append(ids, fmt.Sprintf("c%03d", i))
		}
		src.send(members(ids...))
		rows := regexp.MustCompile(`<tr class="collector" data-id="(c\d+)" data-count="(\d+)">`)
		total := 0
		for page, want := range map[int]int{1: 50, 2: 50, 3: 20} {
			body := serve(s, fmt.Sprintf("/?page=%d", page)).Body.String()
			got := rows.FindAllStringSubmatch(body, -1)
			if len(got) != want || !strings.Contains(body, `<a href="?page=2">2</a>`) && page != 2 {
				t.Fatalf("page %d: %d bars, want %d", page, len(got), want)
			}
			if first := got[0][1]; first != ids[(page-1)*50] {
				t.Fatalf("page %d starts with %s, want %s", page, first, ids[(page-1)*50])
			}
			for _, m := range got {
				var n int
				fmt.Sscan(m[2], &n)
				total += n
			}
		}
		if total != 100 {
			t.Fatalf("the bars add up to %d targets, want 100", total)
		}
		src.send(members(ids[1:]...))
		body := serve(s, "/").Body.String()
		if strings.Contains(body, `data-id="c000"`) || !strings.Contains(body, `data-kind="leave"`) || !strings.Contains(body, "c000 left") {
			t.Fatalf("after c000 left: %s", body)
		}
		rec := serve(s, "/")
		if rec.Header().Get("Content-Type") != "text/html; charset=utf-8" || strings.Contains(rec.Body.String(), `src="http`) ||
			strings.Contains(rec.Body.String(), `fetch("http`) ||
			strings.Contains(rec.Body.String(), `href="/`) || strings.Contains(rec.Body.String(), `fetch("/`) {
			t.Fatalf("content type %q, an external reference or an absolute link", rec.Header().Get("Content-Type"))
		}
	})
}

func TestPprofAndMetricsOnlyWhenAsked(t *testing.T) {
	s, err := promshard.New([]promshard.Job{{Name: "node", Targets: pool(1), Outputs: []promshard.Output{&filesd.Handler{}}}},
		promshard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
		o := Options{Pprof: on}
		if on {
			o.Gatherer = reg
		}
		h := Handler(s, o)
		for _, path := range []string{"/debug/pprof/heap?debug=1", "/metrics"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if (rec.Code == 200) != on {
				t.Fatalf("on %v: %s answers %d", on, path, rec.Code)
			}
		}
	}
}

// Simulating a collector's removal gives the moves that removing it then
// makes; a saved /api/v1/assignment simulates the same offline; the HTTP
// endpoint answers the same.
func TestSimulateThenDoIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, src := start(t, 100, promshard.Job{Shard: shard.Options{Replicas: 2}}, promshard.Options{})
		src.send(members("a", "b", "c", "d", "e"))
		change, err := ParseChange([]string{"c"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		sim, err := s.Simulate(t.Context(), "node", change, 0)
		if err != nil {
			t.Fatal(err)
		}
		if sim.Moved == 0 || sim.Targets != 100 || sim.After.Members != 4 {
			t.Fatalf("simulation: %+v", sim)
		}
		saved, err := ReadAssignment(serve(s, "/api/v1/assignment").Body)
		if err != nil {
			t.Fatal(err)
		}
		offline, err := saved["node"].Simulate(context.Background(), change, 0)
		if err != nil || !reflect.DeepEqual(offline.Moves, sim.Moves) || !reflect.DeepEqual(offline.Loads, sim.Loads) {
			t.Fatalf("from the saved assignment: %+v, %v; live: %+v", offline, err, sim)
		}
		rec := serve(s, "/api/v1/simulate?remove=c")
		var overHTTP map[string]*shard.Simulation
		if err := json.Unmarshal(rec.Body.Bytes(), &overHTTP); err != nil || !reflect.DeepEqual(overHTTP["node"].Moves, sim.Moves) {
			t.Fatalf("/api/v1/simulate: %s (%v)", rec.Body, err)
		}
		src.send(members("a", "b", "d", "e"))
		snap, _ := s.Snapshot("node")
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
	synctest.Test(t, func(t *testing.T) {
		s, src := start(t, 1, promshard.Job{}, promshard.Options{})
		src.send(members("a"))
		rec := serve(s, "/api/v1/simulate?add=x:0")
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "weight") {
			t.Fatalf("bad query: %d %s", rec.Code, rec.Body)
		}
		rec = serve(s, "/api/v1/simulate?"+strings.Repeat("add=x&", DefaultMaxChanges+1))
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "at most") {
			t.Fatalf("too many changes: %d %s", rec.Code, rec.Body)
		}
	})
}

// On a standby: ready names the leader, http_sd answers 503; once it
// leads: http_sd serves with the epoch header, and the assignment says the
// epoch and the role.
func TestElectionOverHTTP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		el := &elector{ready: make(chan struct{})}
		s, src := start(t, 100, promshard.Job{}, promshard.Options{Elector: el})
		src.send(members("a", "b", "c"))
		if rec := serve(s, "/sd/node/a"); rec.Code != 503 {
			t.Fatalf("http_sd on a standby: %d, want 503", rec.Code)
		}
		if rec := serve(s, "/-/ready"); rec.Code != 200 || !strings.Contains(rec.Body.String(), "standby (leader: copy-1)") {
			t.Fatalf("ready on a standby: %d %q", rec.Code, rec.Body)
		}
		el.lead()
		if rec := serve(s, "/sd/node/a"); rec.Code != 200 || rec.Header().Get(EpochHeader) != "1" {
			t.Fatalf("http_sd on the leader: %d, epoch header %q", rec.Code, rec.Header().Get(EpochHeader))
		}
		if rec := serve(s, "/api/v1/assignment"); !strings.Contains(rec.Body.String(), `"epoch": 1`) ||
			!strings.Contains(rec.Body.String(), `"role": "leader"`) {
			t.Fatalf("assignment: %s", rec.Body)
		}
	})
	// A copy in self mode is not elected: ready says so plainly, never
	// "standby".
	synctest.Test(t, func(t *testing.T) {
		s, src := start(t, 10, promshard.Job{Self: "a", Outputs: []promshard.Output{&filesd.Handler{}}},
			promshard.Options{Elector: &elector{ready: make(chan struct{})}})
		src.send(members("a", "b"))
		if rec := serve(s, "/-/ready"); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "ready" {
			t.Fatalf("ready in self mode: %d %q", rec.Code, rec.Body)
		}
	})
}

// A registered collector out of the ring is in the assignment with its
// state: leaving when it fails its check, draining when drained.
func TestAssignmentShowsLeavers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, src := start(t, 100, promshard.Job{}, promshard.Options{})
		sick := members("a", "b", "c", "d")[2:]
		sick[0].State, sick[1].State = watch.StateCritical, watch.StateMaintenance
		src.send(members("a", "b"), sick...)
		body := serve(s, "/api/v1/assignment").Body.String()
		if !strings.Contains(body, `"state": "leaving"`) || !strings.Contains(body, `"state": "draining"`) {
			t.Fatalf("assignment: %s", body)
		}
	})
}

// More expensive requests at once than the bound are answered 429.
func TestHeavyRequestsAreBounded(t *testing.T) {
	h := &handler{opts: Options{MaxHeavy: 1}, heavy: make(chan struct{}, 1)}
	entered, release := make(chan struct{}), make(chan struct{})
	f := h.bounded(func(w2 http.ResponseWriter, _ *http.Request) { close(entered); <-release })
	done := make(chan struct{})
	go func() { f(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); close(done) }()
	<-entered
	rec := httptest.NewRecorder()
	f(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 429 {
		t.Fatalf("a second heavy request: %d, want 429", rec.Code)
	}
	close(release)
	<-done
}

// Search finds a target by its address without the port, by a label, and
// by the collector it is written for; the events API lists a leave.
func TestSearchAndEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, src := start(t, 10, promshard.Job{}, promshard.Options{})
		src.send(members("a", "b"))
		search := func(q string) SearchResult {
			rec := serve(s, "/api/v1/search?q="+url.QueryEscape(q))
			var res SearchResult
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != 200 {
				t.Fatalf("search %q: %d %s", q, rec.Code, rec.Body)
			}
			return res
		}
		if res := search("10.1.0.7"); res.Matched != 1 || res.Targets[0].Target != "10.1.0.7:9100" || len(res.Targets[0].Collectors) != 1 {
			t.Fatalf("by address without port: %+v", res)
		}
		if res := search("10.1.0.7:9100"); res.Matched != 1 {
			t.Fatalf("by address: %+v", res)
		}
		if res := search("env=test"); res.Matched != 10 || res.Targets[0].Labels["env"] != "test" {
			t.Fatalf("by label: %+v", res)
		}
		byA, byB := search("a"), search("b")
		if byA.Matched+byB.Matched != 10 || byA.Matched == 0 {
			t.Fatalf("by collector: a %d, b %d", byA.Matched, byB.Matched)
		}
		if res := search("10.9.9.9"); res.Matched != 0 {
			t.Fatalf("an unknown host: %+v", res)
		}
		src.send(members("a"))
		var events map[string][]promshard.Event
		if err := json.Unmarshal(serve(s, "/api/v1/events").Body.Bytes(), &events); err != nil {
			t.Fatal(err)
		}
		if e := events["node"]; len(e) != 1 || e[0].Kind.String() != "leave" || e[0].Moved != byB.Matched {
			t.Fatalf("events %+v", e)
		}
	})
}

// /api/v1/audit lists at most limit problems per job from offset on, with
// their total, so that an answer stays bounded at any fleet size.
func TestAuditIsPaged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, src := start(t, 30, promshard.Job{}, promshard.Options{Audit: promshard.AuditOptions{Options: &audit.Options{},
			Interval: time.Minute}, CollectorURL: func(m watch.Member) string { return "http://127.0.0.1:1" }})
		src.send(members("a", "b"))
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		var pages []AuditPage
		rec := serve(s, "/api/v1/audit?limit=7&offset=5")
		if err := json.Unmarshal(rec.Body.Bytes(), &pages); err != nil || len(pages) != 1 {
			t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
		}
		if p := pages[0]; p.Total != 30 || len(p.Report.Problems) != 7 || p.Offset != 5 {
			t.Fatalf("page: total %d, %d problems, offset %d", p.Total, len(p.Report.Problems), p.Offset)
		}
		if rec := serve(s, "/api/v1/audit?limit=100000"); rec.Code != http.StatusBadRequest {
			t.Fatalf("a limit above the bound: %d", rec.Code)
		}
	})
}

// A simulation is bounded in the weight it adds, and stops when its client
// gives up.
func TestSimulateIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, src := start(t, 100, promshard.Job{}, promshard.Options{})
		src.send(members("a", "b"))
		if rec := serve(s, "/api/v1/simulate?add=x:1000&add=y:5"); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "weigh 1005") {
			t.Fatalf("a heavy addition: %d %s", rec.Code, rec.Body)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Simulate(ctx, "node", shard.Change{Remove: []string{"a"}}, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("a simulation for a client that left: %v", err)
		}
	})
}

// A collector whose ID no output can name is shown on the page as left
// out, and a simulation cannot add one.
func TestExcludedIsShown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, src := start(t, 10, promshard.Job{Outputs: []promshard.Output{&filesd.Handler{}, mustDir(t)}}, promshard.Options{})
		src.send(members("a", "b", "../evil"))
		body := serve(s, "/").Body.String()
		if !strings.Contains(body, `class="bad excluded"`) || !strings.Contains(body, "<b>../evil</b>") {
			t.Fatalf("the page does not name the excluded collector:\n%s", body)
		}
		if rec := serve(s, "/api/v1/simulate?add=..%2Fx"); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "cannot serve this ID") {
			t.Fatalf("simulate add ../x: %d %s", rec.Code, rec.Body)
		}
	})
}

func mustDir(t *testing.T) *filesd.Dir {
	d, err := filesd.NewDir(filesd.DirOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A saved copy of a job balanced by series under a cap sizes its
// simulation from the collectors' series and the job's cap.
func TestSavedSimulationIsSized(t *testing.T) {
	ja := JobAssignment{Ring: shard.KindRendezvous, Replicas: 1, MaxSeries: 10_000, Collectors: map[string]CollectorAssignment{
		"a": {Targets: []string{"10.0.0.1:9100"}, Series: 9000},
		"b": {Targets: []string{"10.0.0.2:9100"}, Series: 9000},
		"c": {Targets: []string{"10.0.0.3:9100"}, Series: 9000},
		"d": {Targets: []string{}, State: "leaving"},
	}}
	sim, err := ja.Simulate(context.Background(), shard.Change{Remove: []string{"c"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if sim.CollectorsNeeded != 4 || sim.After.Members != 2 { // 27,000 within 10,000 each: 3, and one for a loss
		t.Fatalf("needed %d, after %d; want 4 and 2", sim.CollectorsNeeded, sim.After.Members)
	}
	ja.MaxSeries = 0
	if sim, _ := ja.Simulate(context.Background(), shard.Change{}, 0); sim.CollectorsNeeded != 0 {
		t.Fatalf("no cap: needed %d, want 0 (unknown)", sim.CollectorsNeeded)
	}
}
