package promshard

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// A refresh that finds the members and the targets unchanged skips the
// reshard and writes nothing; a changed label, a changed weight, and a
// retry after a failed write are never skipped.
func TestUnchangedReshardIsSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{RefreshInterval: time.Minute})
		h.members("a", "b")
		refresh := func() (calls int, skipped bool) {
			time.Sleep(time.Minute + time.Millisecond)
			synctest.Wait()
			calls, _ = h.out.snapshot()
			snap, _ := h.s.Snapshot("node")
			return calls, snap.Last.Skipped
		}
		calls0, _ := h.out.snapshot()
		if calls, skipped := refresh(); !skipped || calls != calls0 {
			t.Fatalf("an unchanged refresh: skipped %v, %d output updates (was %d)", skipped, calls, calls0)
		}
		// One label of one group changes: not skipped.
		h.prov.mu.Lock()
		g := *h.prov.groups[0]
		g.Labels = g.Labels.Clone()
		g.Labels["env"] = "prod"
		h.prov.groups = append(h.prov.groups[:0:0], &g)
		h.prov.mu.Unlock()
		if calls, skipped := refresh(); skipped || calls != calls0+1 {
			t.Fatalf("after a label change: skipped %v, %d updates", skipped, calls)
		}
		if _, skipped := refresh(); !skipped {
			t.Fatal("the next unchanged refresh was not skipped")
		}
		// A member's weight changes: not skipped.
		ms := members("a", "b")
		ms[1].Weight = 3
		h.src.sets <- ms
		synctest.Wait()
		if snap, _ := h.s.Snapshot("node"); snap.Last.Skipped {
			t.Fatal("a weight change was skipped")
		}
		// A failed write is retried, not skipped.
		h.out.mu.Lock()
		h.out.err = errors.New("disk full")
		h.out.mu.Unlock()
		h.prov.mu.Lock()
		g2 := *h.prov.groups[0]
		g2.Labels = g2.Labels.Clone()
		g2.Labels["env"] = "staging"
		h.prov.groups = append(h.prov.groups[:0:0], &g2)
		h.prov.mu.Unlock()
		h.prov.changed()
		synctest.Wait()
		if snap, _ := h.s.Snapshot("node"); snap.Last.Err == nil {
			t.Fatal("the write did not fail")
		}
		h.out.mu.Lock()
		h.out.err = nil
		h.out.mu.Unlock()
		if _, skipped := refresh(); skipped {
			t.Fatal("the pass after a failed write was skipped")
		}
		if snap, _ := h.s.Snapshot("node"); snap.Last.Err != nil || string(snap.Assignment.Groups["a"][0].Labels["env"]) != "staging" {
			t.Fatalf("after the retry: %v", snap.Last.Err)
		}
	})
}
