package promshard

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/watch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource sends the member sets given on sets; Run fails with err once
// err is sent.
type fakeSource struct {
	sets chan []watch.Member
	errc chan error
	runs int
	mu   sync.Mutex
}

func newSource() *fakeSource {
	return &fakeSource{sets: make(chan []watch.Member), errc: make(chan error)}
}

func (s *fakeSource) Run(ctx context.Context, out chan<- []watch.Member) error {
	s.mu.Lock()
	s.runs++
	s.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-s.errc:
			return err
		case ms := <-s.sets:
			select {
			case out <- ms:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func members(ids ...string) []watch.Member {
	out := make([]watch.Member, len(ids))
	for i, id := range ids {
		out[i] = watch.Member{ID: id, Address: "10.9.0." + fmt.Sprint(i+1), Port: 9090}
	}
	return out
}

// provider is a target provider whose answer the test sets; it is a Runner
// so that the test can report changes.
type provider struct {
	mu     sync.Mutex
	groups []*targetgroup.Group
	err    error
	reads  int
	notify chan<- struct{}
	ready  chan struct{}
}

func newProvider(n int) *provider {
	p := &provider{ready: make(chan struct{})}
	p.set(n)
	return p
}

func (p *provider) set(n int) {
	g := &targetgroup.Group{Source: "test", Labels: model.LabelSet{"env": "test"}}
	for i := range n {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.1.%d.%d:9100", i/250, i%250))})
	}
	p.mu.Lock()
	p.groups, p.err = []*targetgroup.Group{g}, nil
	p.mu.Unlock()
}

func (p *provider) fail(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

func (p *provider) Targets(context.Context) ([]*targetgroup.Group, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	return p.groups, p.err
}

func (p *provider) Run(ctx context.Context, changed chan<- struct{}) error {
	p.mu.Lock()
	p.notify = changed
	p.mu.Unlock()
	close(p.ready)
	<-ctx.Done()
	return nil
}

func (p *provider) changed() {
	<-p.ready
	p.mu.Lock()
	n := p.notify
	p.mu.Unlock()
	n <- struct{}{}
}

// output records what it is given and reports changed members like a
// directory of files would: a member whose groups differ, and one that
// left.
type output struct {
	mu      sync.Mutex
	calls   int
	last    map[string][]*targetgroup.Group
	err     error
	reject  string           // CheckMember rejects this ID
	block   chan struct{}    // when set, Update waits on it
	entered chan struct{}    // when set, Update signals it
	history []map[string]int // member → target count, per call
}

func (o *output) Update(_ context.Context, groups map[string][]*targetgroup.Group) ([]string, error) {
	if o.entered != nil {
		o.entered <- struct{}{}
	}
	if o.block != nil {
		<-o.block
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	counts := map[string]int{}
	var changed []string
	for id, gs := range groups {
		counts[id] += 0
		for _, g := range gs {
			counts[id] += len(g.Targets)
		}
		if !slices.Equal(flat(gs), flat(o.last[id])) || o.last[id] == nil {
			changed = append(changed, id)
		}
	}
	for id := range o.last {
		if _, ok := groups[id]; !ok {
			changed = append(changed, id)
		}
	}
	o.history = append(o.history, counts)
	slices.Sort(changed)
	if o.err != nil {
		return changed[:min(1, len(changed))], o.err
	}
	o.last = groups
	return changed, nil
}

func (o *output) CheckMember(id string) error {
	if id == o.reject {
		return fmt.Errorf("bad ID %q", id)
	}
	return nil
}

func (o *output) snapshot() (int, map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.history) == 0 {
		return o.calls, nil
	}
	return o.calls, o.history[len(o.history)-1]
}

func flat(gs []*targetgroup.Group) []string {
	var out []string
	for _, g := range gs {
		for _, t := range g.Targets {
			out = append(out, string(t[model.AddressLabel]))
		}
	}
	return out
}

// flatc is flat of compact groups.
func flatc(gs []*tstore.Group) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.Targets...)
	}
	return out
}

// compactor converts groups to the compact form the Sharder holds, the
// same group (with as many targets) to the same compact group, so that
// tests that share groups between two maps share them in compact form too.
type compactor map[*targetgroup.Group]*tstore.Group

func (c compactor) of(g *targetgroup.Group) *tstore.Group {
	if g == nil {
		return nil
	}
	if x, ok := c[g]; ok && len(x.Targets) == len(g.Targets) {
		return x
	}
	x := tstore.From(g)
	c[g] = x
	return x
}

func (c compactor) all(gs []*targetgroup.Group) []*tstore.Group {
	if gs == nil {
		return nil
	}
	out := make([]*tstore.Group, len(gs))
	for i, g := range gs {
		out[i] = c.of(g)
	}
	return out
}

func (c compactor) each(m map[string][]*targetgroup.Group) map[string][]*tstore.Group {
	if m == nil {
		return nil
	}
	out := make(map[string][]*tstore.Group, len(m))
	for id, gs := range m {
		out[id] = c.all(gs)
		if out[id] == nil {
			out[id] = []*tstore.Group{}
		}
	}
	return out
}

// reloader records reloads; fail[id] failures come first for id; hang[id]
// blocks id's reloads until ctx ends.
type reloader struct {
	mu    sync.Mutex
	calls map[string][]string // id → addresses
	fail  map[string]int
	hang  map[string]bool
}

func newReloader() *reloader {
	return &reloader{calls: map[string][]string{}, fail: map[string]int{}, hang: map[string]bool{}}
}

func (r *reloader) Reload(ctx context.Context, c reload.Collector) error {
	r.mu.Lock()
	r.calls[c.ID] = append(r.calls[c.ID], c.Address)
	hang := r.hang[c.ID]
	fail := r.fail[c.ID] > 0
	if fail {
		r.fail[c.ID]--
	}
	r.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if fail {
		return errors.New("copy failed")
	}
	return nil
}

func (r *reloader) addrs(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls[id])
}

func (r *reloader) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls[id])
}

// harness runs a Sharder of one job in a synctest bubble.
type harness struct {
	t      *testing.T
	s      *Sharder
	src    *fakeSource
	prov   *provider
	out    *output
	rl     *reloader
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	runSrc watch.Source // when set, the source Run gets instead of src
	once   sync.Once
}

func start(t *testing.T, job Job, opts Options) *harness {
	t.Helper()
	return startWith(t, job, opts, nil)
}

// startWith is start with prepare called on the harness before the Sharder
// runs (to replace its reader, or the source it runs with: runSrc).
func startWith(t *testing.T, job Job, opts Options, prepare func(*harness)) *harness {
	t.Helper()
	h := &harness{t: t, src: newSource(), prov: newProvider(100), out: &output{}, rl: newReloader(),
		reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	job.Name = "node"
	if job.Targets == nil {
		job.Targets = h.prov
	}
	if job.Outputs == nil {
		job.Outputs = []Output{h.out}
	}
	if job.Reloader == nil {
		job.Reloader = h.rl
	}
	opts.Registerer = h.reg
	s, err := New([]Job{job}, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	var src watch.Source = h.src
	if prepare != nil {
		prepare(h)
		if h.runSrc != nil {
			src = h.runSrc
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- s.Run(ctx, src) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.once.Do(func() {
		h.cancel()
		if err := <-h.done; err != nil {
			h.t.Errorf("Run returned %v after cancel, want nil", err)
		}
	})
}

func (h *harness) members(ids ...string) {
	h.src.sets <- members(ids...)
	synctest.Wait()
}

func TestReshardsOnMembersAndWritesEveryMember(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{})
		if calls, _ := h.out.snapshot(); calls != 0 {
			t.Fatalf("%d updates before the first member set", calls)
		}
		h.members("a", "b", "c")
		calls, counts := h.out.snapshot()
		if calls != 1 || counts["a"]+counts["b"]+counts["c"] != 100 || len(counts) != 3 {
			t.Fatalf("after the first member set: %d updates, counts %v", calls, counts)
		}
		snap, _ := h.s.Snapshot("node")
		if !snap.Ready() || snap.Assignment.Targets != 100 || snap.Last.Reason.String() != "members" {
			t.Fatalf("snapshot %+v", snap.Last)
		}
		// Every member's output changed the first time: each is reloaded once.
		for _, id := range []string{"a", "b", "c"} {
			if n := h.rl.count(id); n != 1 {
				t.Fatalf("%s reloaded %d times, want 1", id, n)
			}
		}
	})
}

// Bursts of changes while a reshard runs become one more reshard.
func TestCoalescesBursts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{})
		h.out.block, h.out.entered = make(chan struct{}), make(chan struct{}, 10)
		go h.prov.changed()
		h.src.sets <- members("a", "b")
		<-h.out.entered // the first reshard is writing
		for range 20 {
			h.prov.changed()
		}
		h.src.sets <- members("a", "b", "c")
		synctest.Wait() // every poke has landed
		close(h.out.block)
		synctest.Wait()
		calls, counts := h.out.snapshot()
		if calls != 2 {
			t.Fatalf("%d updates for a burst of 22 changes during a reshard, want 2", calls)
		}
		if len(counts) != 3 {
			t.Fatalf("the coalesced reshard did not use the last member set: %v", counts)
		}
	})
}

// The refresh timer reshards, and rereads the provider, with no change
// reported.
func TestRefreshTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{RefreshInterval: 30 * time.Second})
		h.members("a", "b")
		h.prov.mu.Lock()
		reads := h.prov.reads
		h.prov.mu.Unlock()
		time.Sleep(30*time.Second + time.Millisecond)
		synctest.Wait()
		h.prov.mu.Lock()
		defer h.prov.mu.Unlock()
		if h.prov.reads != reads+1 {
			t.Fatalf("provider read %d times after one refresh interval, want %d", h.prov.reads, reads+1)
		}
		if snap, _ := h.s.Snapshot("node"); snap.Last.Reason.String() != "timer" {
			t.Fatalf("reason %q, want timer", snap.Last.Reason)
		}
	})
}

// A failing provider keeps its last good targets; before any good answer
// nothing is written at all.
func TestLastGoodTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startWith(t, Job{}, Options{}, func(h *harness) { h.prov.fail(errors.New("cmdb down")) })
		h.members("a", "b")
		if calls, _ := h.out.snapshot(); calls != 0 {
			t.Fatal("an output was updated although the provider never answered")
		}
		snap, _ := h.s.Snapshot("node")
		if snap.Ready() || snap.Last.Err == nil || !strings.Contains(snap.Last.Err.Error(), "cmdb down") {
			t.Fatalf("not-ready state expected, got ready=%v err=%v", snap.Ready(), snap.Last.Err)
		}
		h.prov.set(40)
		h.prov.changed()
		synctest.Wait()
		h.prov.fail(errors.New("cmdb down again"))
		h.prov.changed() // the next read fails
		synctest.Wait()
		h.members("a", "b", "c")
		_, counts := h.out.snapshot()
		if counts["a"]+counts["b"]+counts["c"] != 40 {
			t.Fatalf("after a provider failure the outputs got %v, want the last good 40 targets", counts)
		}
		snap, _ = h.s.Snapshot("node")
		if !snap.Last.StaleTargets || snap.Last.Err != nil {
			t.Fatalf("report %+v, want stale targets and no error", snap.Last)
		}
	})
}

// An empty answer before any good one writes nothing unless allowed.
func TestEmptyFirstFetchWritesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Empty before Run starts: its first fetch must see it.
		h := startWith(t, Job{}, Options{}, func(h *harness) { h.prov.set(0) })
		h.members("a", "b")
		if calls, _ := h.out.snapshot(); calls != 0 {
			t.Fatal("an empty first fetch emptied the outputs")
		}
		if snap, _ := h.s.Snapshot("node"); !errors.Is(snap.Last.Err, targets.ErrEmpty) {
			t.Fatalf("error %v, want targets.ErrEmpty", snap.Last.Err)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		h := startWith(t, Job{TargetOptions: targets.JobOptions{AllowEmpty: true}}, Options{}, func(h *harness) { h.prov.set(0) })
		h.members("a", "b")
		if calls, counts := h.out.snapshot(); calls != 1 || len(counts) != 2 {
			t.Fatalf("with AllowEmpty: %d updates, %v", calls, counts)
		}
	})
}

// In self mode only the Self member's groups reach the outputs, and an
// empty list while it is not a healthy member.
func TestSelfMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{Self: "b", Known: []watch.Member{{ID: "b", Address: "10.8.0.2", Port: 9090}}}, Options{})
		h.members("a", "b")
		_, counts := h.out.snapshot()
		if len(counts) != 1 || counts["b"] == 0 {
			t.Fatalf("self mode wrote %v, want only b's targets", counts)
		}
		h.members("a", "c")
		h.out.mu.Lock()
		last := h.out.last
		h.out.mu.Unlock()
		if gs, ok := last["b"]; !ok || gs == nil || len(gs) != 0 || len(last) != 1 {
			t.Fatalf("unhealthy self member got %v, want exactly b: []", last)
		}
		h.rl.mu.Lock()
		defer h.rl.mu.Unlock()
		if got := h.rl.calls["b"]; len(got) != 2 || got[1] != "10.9.0.2:9090" {
			// b left in the second set: its address comes from the previous set.
			t.Fatalf("reloads of b: %v", got)
		}
		if len(h.rl.calls) != 1 {
			t.Fatalf("self mode reloaded others: %v", h.rl.calls)
		}
	})
}

// A member that leaves still gets its reload (its output changed), at the
// address it had, and its per-member series are deleted.
func TestDepartedMember(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{})
		h.members("a", "b", "c")
		if n := testutil.CollectAndCount(h.reg, "promshard_assigned_targets"); n != 3 {
			t.Fatalf("%d promshard_assigned_targets series, want 3", n)
		}
		h.members("a", "b")
		if got := h.rl.addrs("c"); len(got) != 2 || got[1] != "10.9.0.3:9090" {
			t.Fatalf("reloads of the departed member c: %v", got)
		}
		if n := testutil.CollectAndCount(h.reg, "promshard_assigned_targets"); n != 2 {
			t.Fatalf("%d promshard_assigned_targets series after c left, want 2", n)
		}
		if n := testutil.CollectAndCount(h.reg, "promshard_reload_total"); n != 2 {
			t.Fatalf("%d promshard_reload_total series after c left, want 2 (a and b)", n)
		}
	})
}

// A failed reload is retried with backoff until it succeeds; a hung one
// delays nobody else.
func TestReloadRetriedAndHungReloadIsolated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{Reload: reload.QueueOptions{BackoffMin: time.Second, BackoffMax: 4 * time.Second}})
		h.rl.fail["a"] = 3
		h.rl.hang["b"] = true
		h.members("a", "b", "c")
		if h.rl.count("a") != 1 || h.rl.count("c") != 1 {
			t.Fatalf("first reloads: %v", h.rl.calls)
		}
		snap, _ := h.s.Snapshot("node")
		if !slices.Equal(snap.PendingReloads, []string{"a", "b"}) {
			t.Fatalf("pending %v, want [a b]", snap.PendingReloads)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := h.rl.count("a"); n != 4 {
			t.Fatalf("a reloaded %d times in a minute after 3 failures, want 4", n)
		}
		// While b hangs, the members change: c's reload is not delayed.
		h.members("a", "b", "c", "d")
		if h.rl.count("d") != 1 {
			t.Fatalf("d was not reloaded while b hangs: %v", h.rl.calls)
		}
		snap, _ = h.s.Snapshot("node")
		if !slices.Equal(snap.PendingReloads, []string{"b"}) {
			t.Fatalf("pending %v, want [b]", snap.PendingReloads)
		}
	})
}

// A member whose ID an output cannot serve is left out; the others are
// sharded as usual.
func TestBadMemberIDExcluded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{})
		h.out.reject = "../evil"
		h.members("a", "b", "../evil")
		_, counts := h.out.snapshot()
		if len(counts) != 2 || counts["a"]+counts["b"] != 100 {
			t.Fatalf("counts %v, want all 100 targets on a and b", counts)
		}
		if v := testutil.ToFloat64(h.s.m.excluded.WithLabelValues("node")); v != 1 {
			t.Fatalf("promshard_excluded_members %v, want 1", v)
		}
		snap, _ := h.s.Snapshot("node")
		if !slices.Equal(snap.Last.Excluded, []string{"../evil"}) || !snap.Ready() {
			t.Fatalf("report %+v", snap.Last)
		}
	})
}

// A member whose weight is above shard.MaxWeight is left out, not a crash
// or a ring of billions of seeds.
func TestHugeWeightExcluded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{})
		ms := members("a", "b")
		ms[1].Weight = 4294967295
		h.src.sets <- ms
		synctest.Wait()
		_, counts := h.out.snapshot()
		if len(counts) != 1 || counts["a"] != 100 {
			t.Fatalf("counts %v, want all on a", counts)
		}
	})
}

// An output error keeps the served state at what was last written, marks
// the job not ready, and still reloads what was written.
func TestOutputErrorKeepsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{})
		h.members("a", "b")
		h.out.mu.Lock()
		h.out.err = errors.New("disk full")
		h.out.mu.Unlock()
		h.members("a", "b", "c")
		snap, _ := h.s.Snapshot("node")
		if snap.Ready() || len(snap.Assignment.Members) != 2 {
			t.Fatalf("after a failed write: ready %v, assignment of %d members; want not ready, the 2-member one",
				snap.Ready(), len(snap.Assignment.Members))
		}
		if n := h.rl.count("a") + h.rl.count("b") + h.rl.count("c"); n != 3 {
			t.Fatalf("%d reloads, want 3: the two first ones and the one written before the error", n)
		}
	})
}

// Run returns the error of a part that fails for good, naming it.
func TestRunReturnsPartFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		s, err := New([]Job{{Name: "node", Targets: newProvider(3), Outputs: []Output{&output{}}}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		go func() { done <- s.Run(context.Background(), src) }()
		src.errc <- errors.New("consul said 403")
		err = <-done
		if err == nil || !strings.Contains(err.Error(), "member source of [node]") || !strings.Contains(err.Error(), "403") {
			t.Fatalf("Run returned %v", err)
		}
	})
}

// Jobs sharing a member source share one run of it.
func TestJobsShareASource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		o1, o2 := &output{}, &output{}
		s, err := New([]Job{{Name: "a", Targets: newProvider(10), Outputs: []Output{o1}},
			{Name: "b", Targets: newProvider(20), Outputs: []Output{o2}, Members: src}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx, src) }()
		src.sets <- members("x", "y")
		synctest.Wait()
		c1, _ := o1.snapshot()
		c2, _ := o2.snapshot()
		if src.runs != 1 || c1 != 1 || c2 != 1 {
			t.Fatalf("source ran %d times; outputs updated %d and %d times", src.runs, c1, c2)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestOnceAndReshard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, out, rl := newSource(), &output{}, newReloader()
		rl.fail["b"] = 1
		s, err := New([]Job{{Name: "node", Targets: newProvider(30), Outputs: []Output{out}, Reloader: rl}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Reshard(context.Background(), "node"); !errors.Is(err, ErrNotStarted) {
			t.Fatalf("Reshard before any member set: %v", err)
		}
		go func() { src.sets <- members("a", "b") }()
		reports, err := s.Once(context.Background(), src)
		if err != nil || len(reports) != 1 {
			t.Fatalf("Once: %v %v", reports, err)
		}
		r := reports[0]
		if r.Targets != 30 || r.Members != 2 || !slices.Equal(r.Changed, []string{"a", "b"}) ||
			!slices.Equal(r.Reloads.Failed(), []string{"b"}) {
			t.Fatalf("report %+v", r)
		}
		if r, err := s.Reshard(context.Background(), "node"); err != nil || len(r.Changed) != 0 || r.Diff.Changed() {
			t.Fatalf("a second pass with nothing changed: %+v %v", r, err)
		}
	})
}

func TestNewValidates(t *testing.T) {
	p := newProvider(1)
	o := []Output{&output{}}
	for _, tc := range []struct {
		jobs []Job
		opts Options
		want string
	}{
		{nil, Options{}, "no job"},
		{[]Job{{Targets: p, Outputs: o}}, Options{}, "Job.Name is empty"},
		{[]Job{{Name: "a", Targets: p, Outputs: o}, {Name: "a", Targets: p, Outputs: o}}, Options{}, `"a" used twice`},
		{[]Job{{Name: "a", Targets: p}}, Options{}, "Job.Outputs: none"},
		{[]Job{{Name: "a", Outputs: o}}, Options{}, "Options.Registry has no such job"},
		{[]Job{{Name: "a", Targets: p, Outputs: o, Ring: "maglev"}}, Options{}, `"maglev"`},
		{[]Job{{Name: "a", Targets: p, Outputs: o}}, Options{RefreshInterval: time.Millisecond}, "RefreshInterval 1ms: must be at least 1s"},
		{[]Job{{Name: "a", Targets: p, Outputs: o}}, Options{Reload: reload.QueueOptions{BackoffMin: time.Minute, BackoffMax: time.Second}}, "Options.Reload: reload: QueueOptions.BackoffMax"},
		{[]Job{{Name: "a", Targets: p, Outputs: []Output{&output{reject: "../x"}}, Known: members("ok", "../x")}}, Options{}, `Job.Known collector "../x"`},
		{[]Job{{Name: "a", Targets: p, Outputs: o, Self: "zzz", Known: members("a", "b")}}, Options{}, `Job.Self "zzz" is none of the known collectors`},
	} {
		if _, err := New(tc.jobs, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%v): %v, want an error with %q", tc.jobs, err, tc.want)
		}
	}
	reg, _ := targets.NewRegistry(targets.RegistryOptions{})
	_ = reg.Register("from-registry", p, targets.JobOptions{})
	if _, err := New([]Job{{Name: "from-registry", Outputs: o}}, Options{Registry: reg}); err != nil {
		t.Fatalf("a job from Options.Registry: %v", err)
	}
	if _, err := New([]Job{{Name: "a", Targets: p}}, Options{DryRun: true}); err != nil {
		t.Fatalf("a dry run needs no output: %v", err)
	}
}

// SpreadBy reads each member's domain from its service meta, else its node
// meta; every target's two replicas then sit in two domains.
func TestSpreadBy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, out := newSource(), &output{}
		ms := members("a1", "a2", "b1", "none")
		ms[0].Meta = map[string]string{"zone": "a"}
		ms[1].NodeMeta = map[string]string{"zone": "a"}
		ms[2].Meta, ms[2].NodeMeta = map[string]string{"zone": "b"}, map[string]string{"zone": "a"}
		s, err := New([]Job{{Name: "node", Targets: newProvider(200), Outputs: []Output{out},
			Shard: shard.Options{Replicas: 2}, SpreadBy: "zone"}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		go func() { src.sets <- ms }()
		if _, err := s.Once(context.Background(), src); err != nil {
			t.Fatal(err)
		}
		snap, _ := s.Snapshot("node")
		got := map[string]string{}
		for _, m := range snap.Assignment.Members {
			got[m.ID] = m.Domain
		}
		if want := map[string]string{"a1": "a", "a2": "a", "b1": "b", "none": ""}; !maps.Equal(got, want) {
			t.Fatalf("domains %v, want %v", got, want)
		}
		zone := map[string][]string{}
		for id, gs := range out.last {
			for _, g := range gs {
				for _, tg := range g.Targets {
					a := string(tg[model.AddressLabel])
					zone[a] = append(zone[a], got[id])
				}
			}
		}
		for a, zs := range zone {
			if len(zs) != 2 || zs[0] == zs[1] {
				t.Fatalf("target %s in zones %q", a, zs)
			}
		}
	})
}
