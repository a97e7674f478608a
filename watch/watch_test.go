package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/promshard/promshard/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeConsul serves /v1/health/service/<name> like Consul: it answers at
// once when the request's index differs from the current one, and blocks
// (up to the wait) otherwise.
type fakeConsul struct {
	mu      sync.Mutex
	index   uint64
	entries []*api.ServiceEntry
	changed chan struct{}
	seen    []uint64 // index of every request
}

func newFakeConsul() *fakeConsul { return &fakeConsul{index: 10, changed: make(chan struct{})} }

func (f *fakeConsul) set(index uint64, ids ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index = index
	f.entries = nil
	for _, id := range ids {
		f.entries = append(f.entries, &api.ServiceEntry{
			Node:    &api.Node{Node: "n1", Address: "127.0.0.1"},
			Service: &api.AgentService{ID: id, Service: "prom", Port: 9000 + int(id[0]-'a'), Meta: map[string]string{"weight": "2"}},
		})
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeConsul) requests() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.seen...)
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	idx, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	f.mu.Lock()
	f.seen = append(f.seen, idx)
	ch, cur := f.changed, f.index
	f.mu.Unlock()
	if idx == cur && idx > 0 {
		select {
		case <-ch:
		case <-time.After(wait):
		case <-r.Context().Done():
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("X-Consul-Index", strconv.FormatUint(f.index, 10))
	_ = json.NewEncoder(w).Encode(f.entries)
}

func startFake(t *testing.T) (*fakeConsul, HealthClient) {
	f := newFakeConsul()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := NewConsulClient(&api.Config{Address: srv.URL}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return f, c.Health()
}

// run starts w and returns its reports and a stop function that waits for
// Run to return.
func run(t *testing.T, s Source) (<-chan []Member, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []Member)
	done := make(chan error)
	go func() { done <- s.Run(ctx, out) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return out, stop
}

func next(t *testing.T, ch <-chan []Member, within time.Duration) []Member {
	t.Helper()
	select {
	case ms := <-ch:
		return ms
	case <-time.After(within):
		t.Fatalf("no member set within %v", within)
		return nil
	}
}

func noReport(t *testing.T, ch <-chan []Member, d time.Duration) {
	t.Helper()
	select {
	case ms := <-ch:
		t.Fatalf("unexpected report %v", ids(ms))
	case <-time.After(d):
	}
}

func ids(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func wantIDs(t *testing.T, ms []Member, want ...string) {
	t.Helper()
	if fmt.Sprint(ids(ms)) != fmt.Sprint(want) {
		t.Fatalf("members %v, want %v", ids(ms), want)
	}
}

func fastOpts() ConsulOptions {
	return ConsulOptions{Service: "prom", WaitTime: 2 * time.Second, MinInterval: time.Millisecond,
		BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond, Settle: -1}
}

func TestWatcherReportsOnlyChanges(t *testing.T) {
	f, hc := startFake(t)
	f.set(10, "b", "a")
	reg := prometheus.NewPedanticRegistry()
	o := fastOpts()
	o.Registerer = reg
	w, err := NewConsulWatcher(hc, o)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := run(t, w)
	ms := next(t, ch, 2*time.Second)
	wantIDs(t, ms, "a", "b")
	if ms[0].Weight != 2 || ms[0].Node != "n1" || ms[0].Address != "127.0.0.1" || ms[1].Port != 9001 {
		t.Fatalf("member fields not carried: %+v", ms)
	}
	// An index bump with the same set is not a change.
	f.set(11, "a", "b")
	noReport(t, ch, 200*time.Millisecond)
	f.set(12, "a", "b", "c")
	wantIDs(t, next(t, ch, 2*time.Second), "a", "b", "c")
	if got := testutil.ToFloat64(w.m.changes); got != 2 {
		t.Fatalf("changes_total %v, want 2", got)
	}
	if got := testutil.ToFloat64(w.m.members); got != 3 {
		t.Fatalf("members gauge %v, want 3", got)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 6 {
		t.Fatalf("gathered %d metrics (%v), want 6", n, err)
	}
	if s := w.State(); s.LastIndex != 12 || s.ConsecutiveErrors != 0 || len(s.Members) != 3 {
		t.Fatalf("state %+v", s)
	}
}

func TestWatcherIndexRules(t *testing.T) {
	f, hc := startFake(t)
	f.set(50, "a")
	w, _ := NewConsulWatcher(hc, fastOpts())
	ch, _ := run(t, w)
	wantIDs(t, next(t, ch, 2*time.Second), "a")
	// The index goes backwards (a restored snapshot, a new cluster): the
	// watcher resets to 0 instead of blocking on 50 forever.
	f.set(7, "a", "b")
	wantIDs(t, next(t, ch, 2*time.Second), "a", "b")
	// An index of 0 is never sent back as is.
	f.set(0, "b")
	wantIDs(t, next(t, ch, 2*time.Second), "b")
	// The request after that answer is made once the report is taken: poll
	// for it, within a bound.
	var reqs []uint64
	for deadline := time.Now().Add(2 * time.Second); ; {
		if reqs = f.requests(); (len(reqs) > 0 && reqs[len(reqs)-1] == 1) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	sawReset := false
	for i, idx := range reqs {
		if i > 0 && idx == 0 {
			sawReset = true
		}
	}
	if !sawReset {
		t.Fatalf("no index reset after the index went backwards; requests %v", reqs)
	}
	if last := reqs[len(reqs)-1]; last != 1 {
		t.Fatalf("after an index of 0 the watcher sent %d, want 1 (requests %v)", last, reqs)
	}
	if nextIndex(50, 7) != 0 || nextIndex(0, 0) != 1 || nextIndex(5, 9) != 9 {
		t.Fatal("nextIndex rules")
	}
}

// During an outage the last set stands, errors are counted with backoff,
// and recovery reports the set as it is then (synctest: exact backoff).
func TestWatcherKeepsLastSetOnErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &memHealth{}
		h.set("a", "b")
		o := fastOpts()
		o.BackoffMin, o.BackoffMax = time.Second, 4*time.Second
		w, _ := NewConsulWatcher(h, o)
		ch, _ := run(t, w)
		wantIDs(t, next(t, ch, time.Second), "a", "b")
		h.setDown(true)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		s := w.State()
		// Waits of at most 1, 2, 4, 4, … s within 10 s: at least 4 attempts.
		if s.ConsecutiveErrors < 4 || s.LastError == nil || len(s.Members) != 2 {
			t.Fatalf("state during outage %+v", s)
		}
		noReport(t, ch, time.Millisecond)
		h.set("a")
		h.setDown(false)
		start := time.Now()
		wantIDs(t, next(t, ch, 5*time.Second), "a")
		if el := time.Since(start); el > 4*time.Second {
			t.Fatalf("recovered after %v: more than the largest backoff", el)
		}
		if s := w.State(); s.ConsecutiveErrors != 0 || s.LastError != nil {
			t.Fatalf("state after recovery %+v", s)
		}
	})
}

// After an outage the watcher knows at once that Consul is back, even
// when the member set did not change meanwhile: it does not wait on its old
// index for the next change (WaitTime is a minute here).
func TestWatcherRecoversWithoutAChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &memHealth{}
		h.set("a", "b")
		o := fastOpts()
		o.WaitTime, o.BackoffMin, o.BackoffMax = time.Minute, time.Second, time.Second
		w, _ := NewConsulWatcher(h, o)
		ch, _ := run(t, w)
		wantIDs(t, next(t, ch, time.Second), "a", "b")
		h.setDown(true)
		time.Sleep(3 * time.Second)
		if w.State().ConsecutiveErrors == 0 {
			t.Fatal("no error during the outage")
		}
		h.setDown(false)
		time.Sleep(2 * time.Second) // one backoff, then one query
		if s := w.State(); s.ConsecutiveErrors != 0 || s.LastError != nil {
			t.Fatalf("still in error 2 s after Consul came back: %+v", s)
		}
		noReport(t, ch, time.Millisecond)
	})
}

// memHealth is Consul's health endpoint in memory, for synctest: a query
// on the current index blocks until a change or its wait time.
type memHealth struct {
	mu      sync.Mutex
	index   uint64
	ids     []string
	changed chan struct{}
	down    bool // every query fails at once
}

func (h *memHealth) setDown(v bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = v
	if h.changed != nil {
		close(h.changed) // wake blocked queries
	}
	h.changed = make(chan struct{})
}

func (h *memHealth) set(ids ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.index++
	h.ids = ids
	if h.changed != nil {
		close(h.changed)
	}
	h.changed = make(chan struct{})
}

func (h *memHealth) ServiceMultipleTags(_ string, _ []string, _ bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	h.mu.Lock()
	ch, idx, down := h.changed, h.index, h.down
	h.mu.Unlock()
	if down {
		return nil, nil, errors.New("connection refused")
	}
	if q.WaitIndex == idx {
		t := time.NewTimer(q.WaitTime)
		defer t.Stop()
		select {
		case <-ch:
		case <-t.C:
		case <-q.Context().Done():
			return nil, nil, q.Context().Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*api.ServiceEntry
	for _, id := range h.ids {
		id, failing := strings.CutSuffix(id, "!") // "c!": registered, its check critical
		e := &api.ServiceEntry{Node: &api.Node{Node: "n1"}, Service: &api.AgentService{ID: id, Service: "prom", Port: 9090}}
		if failing {
			e.Checks = api.HealthChecks{{Status: api.HealthCritical, ServiceID: id}}
		}
		out = append(out, e)
	}
	return out, &api.QueryMeta{LastIndex: h.index}, nil
}

// A member whose check flaps between failing and passing stays one of the
// unhealthy (critical, then settling) all along: never gone, and the flaps
// report nothing, so a sharder keeps giving it an empty list without a
// reshard per flap.
func TestFlappingMemberStaysUnhealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &memHealth{}
		h.set("a", "b", "c!")
		w, err := NewConsulWatcher(h, ConsulOptions{Service: "prom", Settle: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out := make(chan []Member, 100)
		go func() { _ = w.Run(ctx, out) }()
		synctest.Wait()
		wantIDs(t, <-out, "a", "b")
		for range 60 {
			h.set("a", "b", "c")
			time.Sleep(250 * time.Millisecond)
			if u := w.Unhealthy(); len(u) != 1 || u[0].ID != "c" {
				t.Fatalf("while c settles, unhealthy: %+v", u)
			}
			time.Sleep(250 * time.Millisecond)
			h.set("a", "b", "c!")
			time.Sleep(500 * time.Millisecond)
			if u := w.Unhealthy(); len(u) != 1 || u[0].ID != "c" {
				t.Fatalf("while c fails, unhealthy: %+v", u)
			}
		}
		if len(out) != 0 {
			t.Fatalf("%d reports while c flapped, want 0", len(out))
		}
	})
}

// Settle damps joins, never leaves: a member that flaps never joins, a
// member that leaves is reported at once, and one that passes for the whole
// window joins exactly when it ends.
func TestWatcherSettleDampsJoinsNotLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &memHealth{}
		h.set("a", "b")
		w, err := NewConsulWatcher(h, ConsulOptions{Service: "prom", Settle: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		out := make(chan []Member, 100)
		done := make(chan error)
		go func() { done <- w.Run(ctx, out) }()
		synctest.Wait()
		wantIDs(t, <-out, "a", "b") // the first answer at once
		// c flaps every 500 ms for a minute: it never joins, nothing is reported.
		for range 60 {
			h.set("a", "b", "c")
			time.Sleep(500 * time.Millisecond)
			h.set("a", "b")
			time.Sleep(500 * time.Millisecond)
		}
		synctest.Wait()
		if len(out) != 0 {
			t.Fatalf("%d reports while a member flapped, want 0", len(out))
		}
		// c passes for good: it joins exactly Settle later.
		start := time.Now()
		h.set("a", "b", "c")
		synctest.Wait()
		ms := <-out
		wantIDs(t, ms, "a", "b", "c")
		if el := time.Since(start); el != 2*time.Second {
			t.Fatalf("joined after %v, want exactly the 2s window", el)
		}
		// a leaves: reported at once.
		start = time.Now()
		h.set("b", "c")
		synctest.Wait()
		wantIDs(t, <-out, "b", "c")
		if el := time.Since(start); el >= 200*time.Millisecond {
			t.Fatalf("a leave was reported after %v", el)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestConsulOptionsErrors(t *testing.T) {
	hc := (&api.Client{}).Health()
	for _, tc := range []struct {
		o    ConsulOptions
		want string
	}{
		{ConsulOptions{}, "Service is empty"},
		{ConsulOptions{Service: "p", WaitTime: -1}, "WaitTime -1ns"},
		{ConsulOptions{Service: "p", BackoffMin: time.Second, BackoffMax: time.Millisecond}, "BackoffMax 1ms"},
	} {
		_, err := NewConsulWatcher(hc, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want it to mention %q", tc.o, err, tc.want)
		}
	}
	if _, err := NewConsulWatcher(nil, ConsulOptions{Service: "p"}); err == nil {
		t.Error("nil client accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := NewConsulWatcher(hc, ConsulOptions{Service: "p", Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewConsulWatcher(hc, ConsulOptions{Service: "q", Registerer: reg}); err != nil {
		t.Fatalf("second service on one registry: %v", err)
	}
	if _, err := NewConsulWatcher(hc, ConsulOptions{Service: "p", Registerer: reg}); err == nil {
		t.Fatal("same service registered twice without an error")
	}
}

func TestRegistrationValidate(t *testing.T) {
	for _, tc := range []struct {
		r    Registration
		want string
	}{
		{Registration{}, "Service is empty"},
		{Registration{Service: "p", Port: 9090}, "Address"},
		{Registration{Service: "p", Address: "h", Port: 0}, "Port 0"},
		{Registration{Service: "p", Address: "h", Port: 1, Check: Check{Type: "grpc"}}, `Type "grpc"`},
		{Registration{Service: "p", Address: "h", Port: 1, Check: Check{Interval: -time.Second}}, "Interval -1s"},
	} {
		err := tc.r.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want it to mention %q", tc.r, err, tc.want)
		}
	}
	r := Registration{Service: "prom", Address: "10.0.0.1", Port: 9090, Weight: 3}
	ar := r.agentRegistration()
	if ar.ID != "prom-10.0.0.1-9090" || ar.Check.HTTP != "http://10.0.0.1:9090/-/healthy" || ar.Meta["weight"] != "3" ||
		ar.Check.Interval != "5s" || ar.Check.CheckID != "service:prom-10.0.0.1-9090" {
		t.Fatalf("registration %+v check %+v", ar, ar.Check)
	}
}

// Probed static members leave and return with their probes; under
// synctest, so the 20 ms probe interval is fake time and the test cannot
// flake.
func TestStaticProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		down := map[string]bool{}
		probe := func(_ context.Context, m Member) error {
			mu.Lock()
			defer mu.Unlock()
			if down[m.ID] {
				return errors.New("down")
			}
			return nil
		}
		s, err := NewStaticWatcher(StaticOptions{Members: []Member{{Address: "127.0.0.1", Port: 2}, {Address: "127.0.0.1", Port: 1}},
			Probe: probe, Interval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ch, _ := run(t, s)
		wantIDs(t, next(t, ch, time.Second), "127.0.0.1:1", "127.0.0.1:2")
		mu.Lock()
		down["127.0.0.1:1"] = true
		mu.Unlock()
		wantIDs(t, next(t, ch, time.Second), "127.0.0.1:2")
		noReport(t, ch, 100*time.Millisecond)
		mu.Lock()
		down["127.0.0.1:1"] = false
		mu.Unlock()
		wantIDs(t, next(t, ch, time.Second), "127.0.0.1:1", "127.0.0.1:2")
	})
}

func TestStaticErrors(t *testing.T) {
	for _, tc := range []struct {
		o    StaticOptions
		want string
	}{
		{StaticOptions{}, "Members is empty"},
		{StaticOptions{Members: []Member{{Address: "h"}}}, "Members[0]"},
		{StaticOptions{Members: []Member{{ID: "a"}, {ID: "a"}}}, `duplicate ID "a"`},
		{StaticOptions{Members: []Member{{ID: "a"}}, Probe: TCPProbe()}, "needs an address"},
	} {
		_, err := NewStaticWatcher(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want it to mention %q", tc.o, err, tc.want)
		}
	}
}

func TestHTTPAndTCPProbes(t *testing.T) {
	healthy := true
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/-/healthy" || !healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	m := memberOf(t, srv.URL)
	ctx := context.Background()
	if err := HTTPProbe(nil, "")(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := TCPProbe()(ctx, m); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	healthy = false
	mu.Unlock()
	if err := HTTPProbe(nil, "")(ctx, m); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("unhealthy probe: %v", err)
	}
	srv.Close()
	if err := TCPProbe()(ctx, m); err == nil {
		t.Fatal("TCP probe of a closed port passed")
	}
}

func TestWeightsAreBounded(t *testing.T) {
	for v, want := range map[string]uint32{"3": 3, "1000": 1000, "1001": 0, "4294967295": 0, "0": 0, "x": 0} {
		if w, _ := parseWeight(map[string]string{"weight": v}, "weight"); w != want {
			t.Errorf("weight %q read as %d, want %d", v, w, want)
		}
	}
	if _, err := NewStaticWatcher(StaticOptions{Members: []Member{{ID: "a", Weight: 1001}}}); err == nil || !strings.Contains(err.Error(), "weight 1001") {
		t.Errorf("a static member of weight 1001: %v", err)
	}
}

// Instances that share a service ID on different nodes stay distinct
// members, each named ID@node, unless they share the address too.
func TestSameServiceIDOnTwoNodes(t *testing.T) {
	w, _ := NewConsulWatcher((&api.Client{}).Health(), ConsulOptions{Service: "prom"})
	entry := func(id, node string) *api.ServiceEntry {
		return &api.ServiceEntry{Node: &api.Node{Node: node, Address: "10.0.0." + node[1:]},
			Service: &api.AgentService{ID: id, Service: "prom", Port: 9090}}
	}
	var logged bytes.Buffer
	w.opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	ms := w.members([]*api.ServiceEntry{entry("prom", "n2"), entry("prom", "n1"), entry("c3", "n3")})
	wantIDs(t, ms, "c3", "prom@n1", "prom@n2")
	w.members([]*api.ServiceEntry{entry("prom", "n2"), entry("prom", "n1"), entry("c3", "n3")})
	if n := strings.Count(logged.String(), "several nodes"); n != 2 {
		t.Fatalf("%d warnings after two answers, want one per instance (2):\n%s", n, logged.String())
	}
	if ms[1].Address != "10.0.0.1" || ms[2].Address != "10.0.0.2" {
		t.Fatalf("addresses %+v", ms)
	}
	// One collector registered on two agents (two copies of a sharder, each
	// on its own host) is one member.
	same := entry("c1", "n5")
	same.Service.Address = "10.0.0.9"
	twin := entry("c1", "n4")
	twin.Service.Address = "10.0.0.9"
	ms = w.members([]*api.ServiceEntry{same, twin})
	wantIDs(t, ms, "c1")
	if ms[0].Node != "n4" {
		t.Fatalf("kept node %q, want the first by name", ms[0].Node)
	}
	// A literal service ID "prom@n1" beside the renamed instance of "prom"
	// on n1: neither swallows the other.
	literal := entry("prom@n1", "n7")
	ms = w.members([]*api.ServiceEntry{entry("prom", "n2"), entry("prom", "n1"), literal})
	wantIDs(t, ms, "prom@n1", "prom@n1#2", "prom@n2")
	if !strings.Contains(logged.String(), "collides") {
		t.Fatalf("the collision was not logged:\n%s", logged.String())
	}
}

// A refused token before the first answer ends Run at once with the
// reason; after a good answer the same error is retried like any outage.
func TestWatcherPermanentErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "ACL not found", http.StatusForbidden)
	}))
	defer srv.Close()
	c, err := NewConsulClient(&api.Config{Address: srv.URL}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := NewConsulWatcher(c.Health(), fastOpts())
	err = w.Run(context.Background(), make(chan []Member))
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "token") {
		t.Fatalf("Run returned %v, want the 403 at once", err)
	}
	if !permanent(api.StatusError{Code: 401}) || permanent(api.StatusError{Code: 500}) || permanent(errors.New("x")) {
		t.Fatal("permanent() classifies wrongly")
	}
}

// An answer emptied by ACL filtering is an error (the last set stands),
// not an empty member set.
func TestWatcherACLFilteredAnswer(t *testing.T) {
	var filtered atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Consul-Index", "5")
		w.Header().Set("X-Consul-LastContact", "0") // Consul always sends it; the client parses headers after it
		if filtered.Load() {
			w.Header().Set("X-Consul-Index", "6")
			w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
			_, _ = w.Write([]byte("[]"))
			return
		}
		if r.URL.Query().Get("index") == "5" {
			time.Sleep(20 * time.Millisecond)
		}
		_, _ = w.Write([]byte(`[{"Node": {"Node": "n1"}, "Service": {"ID": "a", "Service": "prom", "Address": "10.0.0.1", "Port": 9090}}]`))
	}))
	defer srv.Close()
	c, _ := NewConsulClient(&api.Config{Address: srv.URL}, time.Second)
	w, _ := NewConsulWatcher(c.Health(), fastOpts())
	ch, _ := run(t, w)
	wantIDs(t, next(t, ch, 2*time.Second), "a")
	filtered.Store(true)
	err := testenv.WaitFor(5*time.Second, 5*time.Millisecond, func() error {
		if s := w.State(); s.LastError == nil || !strings.Contains(s.LastError.Error(), "filtered by ACLs") || len(s.Members) != 1 {
			return fmt.Errorf("state %+v, want the ACL error and the last set kept", s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	noReport(t, ch, 100*time.Millisecond) // and no empty set was reported
}

// A member carries its node's metadata, and Label prefers its own.
func TestMemberNodeMetaAndLabel(t *testing.T) {
	w, _ := NewConsulWatcher((&api.Client{}).Health(), ConsulOptions{Service: "prom"})
	ms := w.members([]*api.ServiceEntry{{
		Node:    &api.Node{Node: "n1", Address: "10.0.0.1", Meta: map[string]string{"zone": "a", "rack": "r1"}},
		Service: &api.AgentService{ID: "c1", Service: "prom", Port: 9090, Meta: map[string]string{"zone": "b"}},
	}})
	if len(ms) != 1 || ms[0].NodeMeta["rack"] != "r1" {
		t.Fatalf("%+v", ms)
	}
	if m := ms[0]; m.Label("zone") != "b" || m.Label("rack") != "r1" || m.Label("row") != "" {
		t.Fatalf("Label: zone %q rack %q row %q", m.Label("zone"), m.Label("rack"), m.Label("row"))
	}
	other := ms[0]
	other.NodeMeta = map[string]string{"zone": "c"}
	if sameMembers(ms, []Member{other}) {
		t.Fatal("Equal ignores node meta")
	}
}

// Instances that fail their check or are in maintenance are not members,
// but Unhealthy lists them with their state; a change of only those is
// reported too (a deregistration is news to the Sharder).
func TestWatcherUnhealthyRoster(t *testing.T) {
	f, hc := startFake(t)
	check := func(id, status string) *api.HealthCheck {
		return &api.HealthCheck{CheckID: "service:" + id, ServiceID: id, Status: status}
	}
	entry := func(id string, checks ...*api.HealthCheck) *api.ServiceEntry {
		return &api.ServiceEntry{Node: &api.Node{Node: "n1", Address: "127.0.0.1"},
			Service: &api.AgentService{ID: id, Service: "prom", Port: 9000 + int(id[0]-'a')}, Checks: checks}
	}
	setEntries := func(index uint64, es ...*api.ServiceEntry) {
		f.mu.Lock()
		f.index, f.entries = index, es
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}
	setEntries(20, entry("a", check("a", api.HealthPassing)), entry("b", check("b", api.HealthCritical)),
		entry("c", check("c", api.HealthPassing), &api.HealthCheck{CheckID: "_service_maintenance:c", Status: api.HealthCritical}),
		entry("d", check("d", api.HealthWarning)))
	w, _ := NewConsulWatcher(hc, fastOpts())
	ch, _ := run(t, w)
	wantIDs(t, next(t, ch, 2*time.Second), "a")
	states := map[string]string{}
	for _, m := range w.Unhealthy() {
		states[m.ID] = m.State
	}
	if want := map[string]string{"b": StateCritical, "c": StateMaintenance, "d": StateWarning}; !maps.Equal(states, want) {
		t.Fatalf("unhealthy %v, want %v", states, want)
	}
	// b is deregistered: the healthy set is the same, but it is reported.
	setEntries(21, entry("a", check("a", api.HealthPassing)),
		entry("c", check("c", api.HealthPassing), &api.HealthCheck{CheckID: "_service_maintenance:c", Status: api.HealthCritical}),
		entry("d", check("d", api.HealthWarning)))
	wantIDs(t, next(t, ch, 2*time.Second), "a")
	if u := w.Unhealthy(); len(u) != 2 || u[0].ID != "c" || u[1].ID != "d" {
		t.Fatalf("after b left Consul: %+v", u)
	}
}
