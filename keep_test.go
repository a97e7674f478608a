package promshard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/tstore"
)

// hangingProvider answers once, then hangs until its context ends.
type hangingProvider struct {
	*provider
	hang chan struct{} // closed: every later read hangs
}

func (p *hangingProvider) Targets(ctx context.Context) ([]*targetgroup.Group, error) {
	select {
	case <-p.hang:
		<-ctx.Done()
		return nil, ctx.Err()
	default:
		return p.provider.Targets(ctx)
	}
}

// A member change reshards at once while the provider hangs: failover
// never waits for a provider; the targets in hand are placed.
func TestFailoverDoesNotWaitForAProvider(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hp := &hangingProvider{provider: newProvider(100), hang: make(chan struct{})}
		h := start(t, Job{Targets: hp}, Options{})
		h.members("a", "b", "c")
		close(hp.hang)
		hp.changed() // the provider is read again, and hangs
		synctest.Wait()
		start := time.Now()
		h.members("a", "b") // c dies
		if took := time.Since(start); took != 0 {
			t.Fatalf("the failover waited %v", took)
		}
		_, counts := h.out.snapshot()
		if counts["a"]+counts["b"] != 100 || counts["c"] != 0 {
			t.Fatalf("after c died: %v", counts)
		}
	})
}

// A file deleted, or overwritten, is written again at the next refresh,
// with a log line and a counter; so is the whole directory removed.
func TestOutputsAreKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out")
		d, err := filesd.NewDir(filesd.DirOptions{Dir: dir, Create: true})
		if err != nil {
			t.Fatal(err)
		}
		var logs lockedLog
		h := start(t, Job{Outputs: []Output{d}}, Options{RefreshInterval: time.Minute, Logger: logs.logger()})
		h.members("a", "b")
		a := filepath.Join(dir, "a.json")
		want, err := os.ReadFile(a)
		if err != nil {
			t.Fatal(err)
		}
		refresh := func() {
			time.Sleep(time.Minute + time.Millisecond)
			synctest.Wait()
		}
		for i, spoil := range []func() error{
			func() error { return os.Remove(a) },
			func() error { return os.WriteFile(a, []byte("garbage"), 0o644) },
			func() error { return os.RemoveAll(dir) },
		} {
			if err := spoil(); err != nil {
				t.Fatal(err)
			}
			refresh()
			got, err := os.ReadFile(a)
			if err != nil || string(got) != string(want) {
				t.Fatalf("spoil %d: after a refresh %q, %v; want it restored", i, got, err)
			}
			if n := strings.Count(logs.String(), "writing them again"); n != i+1 {
				t.Fatalf("spoil %d: %d log lines say an output is written again, want %d:\n%s", i, n, i+1, logs.String())
			}
			if v := testutil.ToFloat64(h.s.m.repaired.WithLabelValues("node")); int(v) < i+1 {
				t.Fatalf("spoil %d: promshard_output_repairs_total %v", i, v)
			}
			snap, _ := h.s.Snapshot("node")
			if !slices.Contains(snap.Last.Repaired, "a") {
				t.Fatalf("spoil %d: report %+v", i, snap.Last)
			}
		}
		refresh()
		if snap, _ := h.s.Snapshot("node"); !snap.Last.Skipped || len(snap.Last.Repaired) != 0 {
			t.Fatalf("an intact refresh: %+v", snap.Last)
		}
	})
}

// fileOutput writes a file per collector and fails for the IDs in fail;
// held is what its files hold.
type fileOutput struct {
	mu   sync.Mutex
	held map[string][]string
	fail map[string]bool
}

func (o *fileOutput) setFail(id string, v bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fail[id] = v
}

// union counts the targets in some file, and all held.
func (o *fileOutput) union() (distinct, total int, c int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := map[string]bool{}
	for _, ts := range o.held {
		total += len(ts)
		for _, a := range ts {
			seen[a] = true
		}
	}
	return len(seen), total, len(o.held["c"])
}

func (o *fileOutput) PathOf(id string) (string, error) { return "/x/" + id, nil }

func (o *fileOutput) Update(_ context.Context, groups map[string][]*targetgroup.Group) ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var changed []string
	var err error
	for _, id := range slices.Sorted(mapKeys(groups)) {
		if o.fail[id] {
			err = errors.New("disk full")
			continue
		}
		o.held[id] = flat(groups[id])
		changed = append(changed, id)
	}
	for id := range o.held {
		if _, ok := groups[id]; !ok {
			delete(o.held, id)
		}
	}
	return changed, err
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// When a write fails part way, no target is in no output: a collector
// that joins and cannot be written leaves every target where it was, and
// the next refresh, with the disk back, writes the new assignment.
func TestFailedWriteLosesNoTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &fileOutput{held: map[string][]string{}, fail: map[string]bool{}}
		h := start(t, Job{Outputs: []Output{out}}, Options{RefreshInterval: time.Minute})
		h.members("a", "b")
		out.setFail("c", true) // c gains, a and b lose: c's file cannot be written
		h.members("a", "b", "c")
		if n, _, _ := out.union(); n != 100 {
			t.Fatalf("after a failed write the outputs hold %d of 100 targets", n)
		}
		snap, _ := h.s.Snapshot("node")
		if snap.Last.Err == nil || len(snap.Assignment.Members) != 2 {
			t.Fatalf("the failed write: err %v, the state served has %d collectors (want the old 2)", snap.Last.Err,
				len(snap.Assignment.Members))
		}
		out.setFail("c", false)
		time.Sleep(time.Minute + time.Millisecond)
		synctest.Wait()
		n, total, c := out.union()
		if n != 100 || c == 0 {
			t.Fatalf("after the retry: %d targets, c holds %d", n, c)
		}
		if total != 100 {
			t.Fatalf("after the retry %d targets are held, want each once (100)", total)
		}
	})
}

// On a real disk that fills in the middle of a reshard (a small tmpfs), the
// files together never lose a target: the files that gain targets are
// written first and the pass stops at the first failure, so a collector
// that leaves keeps its file until its targets are written elsewhere.
// Mounting needs root; elsewhere the test is skipped.
func TestDiskFullLosesNoTarget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "promshard-test", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("root, but mount -t tmpfs failed: %v: %s", err, out)
		}
		t.Skipf("mount -t tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	const n = 6000
	d, err := filesd.NewDir(filesd.DirOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	union := func() (distinct, total int) {
		seen := map[string]bool{}
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var gs []struct{ Targets []string }
			if err := json.Unmarshal(b, &gs); err != nil {
				t.Fatalf("%s holds no valid file_sd list: %v", f, err)
			}
			for _, g := range gs {
				for _, a := range g.Targets {
					seen[a] = true
					total++
				}
			}
		}
		return len(seen), total
	}
	free := func() int64 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * st.Bsize
	}
	filler := filepath.Join(dir, "filler")
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{Targets: newProvider(n), Outputs: []Output{d}}, Options{RefreshInterval: time.Minute})
		h.members("a", "b", "c")
		if got, total := union(); got != n || total != n {
			t.Fatalf("first reshard: %d distinct targets in %d entries, want %d once each", got, total, n)
		}
		a, err := os.Stat(filepath.Join(dir, "a.json"))
		if err != nil {
			t.Fatal(err)
		}
		// Leave room for about one and a half of a's new file (a and b each
		// grow by half when c leaves): the first gaining file may fit, the
		// second cannot.
		if err := os.WriteFile(filler, make([]byte, free()-a.Size()*8/5), 0o644); err != nil {
			t.Fatal(err)
		}
		h.members("a", "b") // c leaves
		snap, _ := h.s.Snapshot("node")
		if snap.Last.Err == nil {
			t.Fatalf("the disk had %d bytes free, files of about %d bytes: no write failed", free(), a.Size()*3/2)
		}
		got, total := union()
		t.Logf("disk full: %v; the files hold %d entries for %d targets", snap.Last.Err, total, got)
		if got != n {
			t.Fatalf("with the disk full the files hold %d of %d targets (%v)", got, n, snap.Last.Err)
		}
		if _, err := os.Stat(filepath.Join(dir, "c.json")); err != nil {
			t.Fatalf("c's file is gone before its targets were written elsewhere: %v", err)
		}
		// Room again: the next refresh completes the move, each target once.
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute + time.Millisecond)
		synctest.Wait()
		got, total = union()
		if got != n || total != n {
			t.Fatalf("after space came back: %d distinct targets in %d entries, want %d once each", got, total, n)
		}
		if snap, _ := h.s.Snapshot("node"); snap.Last.Err != nil || len(snap.Assignment.Members) != 2 {
			t.Fatalf("after space came back: %v, %d collectors", snap.Last.Err, len(snap.Assignment.Members))
		}
	})
}

// lockedLog is a logger's output that the test reads while the job writes.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// A collector whose ID is too long to name a file (a Consul service ID of
// 238 bytes and more) is left out of the ring like any ID an output cannot
// serve: no share of targets lands in no file.
func TestLongIDIsExcluded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, err := filesd.NewDir(filesd.DirOptions{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		h := start(t, Job{Outputs: []Output{d}}, Options{})
		long := strings.Repeat("c", 240)
		h.members("a", "b", long)
		snap, _ := h.s.Snapshot("node")
		if snap.Last.Err != nil || len(snap.Assignment.Members) != 2 || !slices.Equal(snap.Last.Excluded, []string{long}) {
			t.Fatalf("err %v, %d collectors, excluded %v", snap.Last.Err, len(snap.Assignment.Members), snap.Last.Excluded)
		}
	})
}

// A Sharder that replaces another (a config reload) while the provider is
// down takes over its last good targets and its events: a collector that
// dies then still has its targets moved.
func TestAdoptKeepsTheLastGoodTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{})
		h.members("a", "b", "c")
		h.members("a", "b", "c", "d") // an event
		h.stop()
		next := startWith(t, Job{}, Options{}, func(n *harness) {
			n.prov.fail(errors.New("cmdb down"))
			n.s.Adopt(h.s)
		})
		next.members("a", "b") // c and d die while the provider is down
		snap, _ := next.s.Snapshot("node")
		if snap.Last.Err != nil || snap.Assignment == nil || snap.Assignment.Targets != 100 || len(snap.Assignment.Members) != 2 {
			t.Fatalf("after the reload: err %v, assignment %+v", snap.Last.Err, snap.Assignment)
		}
		if len(snap.Events) < 3 || snap.Events[len(snap.Events)-1].Kind.String() != "join" || snap.Events[0].Kind.String() != "leave" {
			t.Fatalf("events not taken over: %+v", snap.Events)
		}
	})
}

// inheritingOutput is an output that records what Adopt hands it.
type inheritingOutput struct {
	output
	prev any
}

func (o *inheritingOutput) Inherit(prev any) bool { o.prev = prev; return true }

// Adopt hands each Inheritor output the one in its place in the job it
// replaces; a filesd.Dir takes over only from a Dir of its own directory.
func TestAdoptInherits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := &inheritingOutput{}
		h := start(t, Job{Outputs: []Output{old}}, Options{})
		h.members("a", "b")
		h.stop()
		nextOut := &inheritingOutput{}
		startWith(t, Job{Outputs: []Output{nextOut}}, Options{}, func(n *harness) { n.s.Adopt(h.s) })
		if nextOut.prev != old {
			t.Fatalf("the output inherited %v, want the one it replaces", nextOut.prev)
		}
	})
}

// Self mode finds its collector when the watcher named the instances of a
// service ID registered on several nodes ID@node: the one on SelfNode. A
// Self that is no collector at all fails the reshard (not ready, a
// metric), and its output holds an empty list.
func TestSelfModeFindsItsInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		central := start(t, Job{}, Options{})
		central.members("a@n1", "a@n2", "b")
		_, want := central.out.snapshot()

		h := start(t, Job{Self: "a", SelfNode: "n2"}, Options{})
		h.members("a@n1", "a@n2", "b")
		_, counts := h.out.snapshot()
		if len(counts) != 1 || counts["a"] != want["a@n2"] || want["a@n2"] == 0 {
			t.Fatalf("self a on n2 wrote %v; central mode gives a@n2 %d", counts, want["a@n2"])
		}
		if snap, _ := h.s.Snapshot("node"); snap.Last.Err != nil {
			t.Fatal(snap.Last.Err)
		}

		lost := start(t, Job{Self: "zzz"}, Options{})
		lost.members("a", "b")
		_, counts = lost.out.snapshot()
		snap, _ := lost.s.Snapshot("node")
		if counts["zzz"] != 0 || snap.Ready() || snap.Last.Err == nil || !strings.Contains(snap.Last.Err.Error(), `"zzz" is neither a member nor a registered collector`) {
			t.Fatalf("an unknown Self: wrote %v, ready %v, err %v", counts, snap.Ready(), snap.Last.Err)
		}
		if v := testutil.ToFloat64(lost.s.m.selfMissing.WithLabelValues("node")); v != 1 {
			t.Fatalf("promshard_self_missing %v", v)
		}
	})
}

// TestUnionSkipsIdenticalGroups holds union, which leaves out the groups of
// b identical to one of a and looks only at a's groups of the sources b's
// others have, to the union of every target, over random lists that share
// groups as one reshard's assignment shares them with the next.
func TestUnionSkipsIdenticalGroups(t *testing.T) {
	// every is the union looking at every target: a's groups, then b's
	// targets that a lacks, by source and address, in groups of their own.
	every := func(a, b []*targetgroup.Group) []*targetgroup.Group {
		type key struct{ src, addr string }
		have := map[key]bool{}
		for _, g := range a {
			for _, t := range g.Targets {
				have[key{g.Source, string(t[model.AddressLabel])}] = true
			}
		}
		out := slices.Clone(a)
		for _, g := range b {
			var extra []model.LabelSet
			for _, t := range g.Targets {
				if !have[key{g.Source, string(t[model.AddressLabel])}] {
					extra = append(extra, t)
				}
			}
			if len(extra) > 0 {
				out = append(out, &targetgroup.Group{Source: g.Source, Labels: g.Labels, Targets: extra})
			}
		}
		return out
	}
	text := func(gs []*targetgroup.Group) string {
		var b strings.Builder
		for _, g := range gs {
			fmt.Fprintln(&b, g.Source, g.Labels, flat([]*targetgroup.Group{g}))
		}
		return b.String()
	}
	rng := rand.New(rand.NewPCG(5, 1))
	sets := make([]model.LabelSet, 40)
	for i := range sets {
		sets[i] = model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d", i))}
	}
	groupLabels := []model.LabelSet{{"env": "prod"}, {"env": "dev"}}
	group := func() *targetgroup.Group {
		g := &targetgroup.Group{Source: fmt.Sprint("s", rng.IntN(3)), Labels: groupLabels[rng.IntN(2)]}
		for range 1 + rng.IntN(6) {
			g.Targets = append(g.Targets, sets[rng.IntN(len(sets))])
		}
		return g
	}
	skipped := 0
	for round := range 300 {
		var a, b []*targetgroup.Group
		for range rng.IntN(6) {
			a = append(a, group())
		}
		for range rng.IntN(6) {
			switch r := rng.IntN(3); {
			case r == 0 && len(a) > 0: // the very group of a
				b = append(b, a[rng.IntN(len(a))])
			case r == 1 && len(a) > 0: // an equal copy: the same label sets
				g := a[rng.IntN(len(a))]
				b = append(b, &targetgroup.Group{Source: g.Source, Labels: g.Labels, Targets: slices.Clone(g.Targets)})
				skipped++
			default:
				b = append(b, group())
			}
		}
		cv := compactor{}
		got, want := text(tstore.All(union(cv.all(a), cv.all(b)))), text(every(a, b))
		if got != want {
			t.Fatalf("round %d: union\n%s\nwant\n%s", round, got, want)
		}
	}
	if skipped == 0 {
		t.Fatal("no round had a group of b identical to one of a")
	}
}

// heldStub is a Holder whose files hold its groups in new groups with
// copied labels and no source, as a parse of file_sd gives: with share, the
// very label sets (as filesd.Dir reads a file back against next), else
// copies of them too.
type heldStub struct {
	groups map[string][]*targetgroup.Group
	share  bool
}

func (h heldStub) Held() (map[string][]*targetgroup.Group, error) {
	out := map[string][]*targetgroup.Group{}
	for id, gs := range h.groups {
		out[id] = []*targetgroup.Group{}
		for _, g := range gs {
			c := &targetgroup.Group{Labels: maps.Clone(g.Labels), Targets: slices.Clone(g.Targets)}
			if !h.share {
				for i, t := range c.Targets {
					c.Targets[i] = model.LabelSet{}
					for k, v := range t {
						c.Targets[i][k] = model.LabelValue(strings.Clone(string(v))) // not even the strings shared
					}
				}
			}
			out[id] = append(out[id], c)
		}
	}
	return out, nil
}

// What is read back gets the source, the labels map and the label set each
// target has in next, first in its own collector's groups: the hand-off
// then pairs the groups that did not change and compares only the others.
func TestHeldSharesNextSets(t *testing.T) {
	set := func(a string) model.LabelSet { return model.LabelSet{model.AddressLabel: model.LabelValue(a)} }
	l1, l2 := model.LabelSet{"env": "prod"}, model.LabelSet{"env": "dev"}
	t1, t2, t3, t4 := set("h1"), set("h2"), set("h3"), set("h4")
	next := map[string][]*targetgroup.Group{
		"a": {{Source: "s1", Labels: l1, Targets: []model.LabelSet{t1, t2}}, {Source: "s2", Labels: l2, Targets: []model.LabelSet{t3}}},
		"b": {{Source: "s1", Labels: l1, Targets: []model.LabelSet{t4}}},
	}
	// a's file still holds h4, which moves to b; b's file is empty.
	disk := map[string][]*targetgroup.Group{
		"a": {{Labels: l1, Targets: []model.LabelSet{t1, t2}}, {Labels: l2, Targets: []model.LabelSet{t3}}, {Labels: l1, Targets: []model.LabelSet{t4}}},
		"b": {},
	}
	cv := compactor{}
	cnext := cv.each(next)
	got := outputs{holders: []Holder{heldStub{groups: disk}}}.held(cnext)
	a := got["a"]
	if len(a) != 3 || a[0].Source != "s1" || a[1].Source != "s2" || a[2].Source != "s1" {
		t.Fatalf("a holds %v, want s1, s2 and s1 (h4, from b's groups)", a)
	}
	for i, want := range []*tstore.Group{cnext["a"][0], cnext["a"][1], cnext["b"][0]} {
		if labels.Identity(a[i].Labels) != labels.Identity(want.Labels) || !tstore.SameTargets(a[i], want) {
			t.Fatalf("a's group %d %v: not next's very labels and sets", i, a[i])
		}
	}
	only, _ := unmatched(got, cnext, false)
	if len(only) != 1 || !maps.Equal(only, map[targetAt]struct{}{{"s1", "h4"}: {}}) {
		t.Fatalf("compared %v, want h4 alone", only)
	}
	// A reader that shares next's label sets (filesd.Dir) gets next's very
	// groups back for those it holds whole; the others as above.
	got = outputs{holders: []Holder{heldStub{groups: disk, share: true}}}.held(cnext)
	if a := got["a"]; len(a) != 3 || a[0] != cnext["a"][0] || a[1] != cnext["a"][1] || a[2] == cnext["b"][0] ||
		a[2].Source != "s1" || !tstore.SameTargets(a[2], cnext["b"][0]) {
		t.Fatalf("with shared sets a holds %v, want next's two groups, then h4 in a group of its own", a)
	}
}
