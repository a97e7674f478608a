package promshard

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/filesd"
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
		h := start(t, Job{Outputs: []Output{d}}, Options{RefreshInterval: time.Minute})
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
