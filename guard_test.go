package promshard

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promshard/promshard/watch"
)

// Four of five collectors leaving at once hold the assignment: nothing is
// written, the guard's metric is 1; when they come back nothing has
// moved. When they stay gone for Settle, the move happens; an operator can
// release it sooner. One leaving alone is an ordinary failover.
func TestPartitionGuard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{Guard: PartitionGuard{Settle: time.Minute}}, Options{RefreshInterval: time.Hour})
		h.members("a", "b", "c", "d", "e")
		calls, before := h.out.snapshot()
		h.members("a") // a partition: four "leave" at once
		if c, _ := h.out.snapshot(); c != calls {
			t.Fatal("the outputs were written while four of five left at once")
		}
		snap, _ := h.s.Snapshot("node")
		if !slices.Equal(snap.Last.Held, []string{"b", "c", "d", "e"}) || !snap.Ready() {
			t.Fatalf("held %v, ready %v", snap.Last.Held, snap.Ready())
		}
		if v := testutil.ToFloat64(h.s.m.guard.WithLabelValues("node")); v != 1 {
			t.Fatalf("promshard_partition_guard_active %v", v)
		}
		h.members("a", "b", "c", "d", "e") // the checks pass again
		if c, after := h.out.snapshot(); c != calls || !mapsEqual(after, before) {
			t.Fatalf("after the partition healed: %d writes (was %d), %v", c, calls, after)
		}
		if v := testutil.ToFloat64(h.s.m.guard.WithLabelValues("node")); v != 0 {
			t.Fatalf("promshard_partition_guard_active %v after it healed", v)
		}

		h.members("a", "b") // three really die
		if c, _ := h.out.snapshot(); c != calls {
			t.Fatal("written at once")
		}
		time.Sleep(time.Minute + time.Millisecond) // the set stayed the same for Settle: the move goes on in steps
		synctest.Wait()
		_, counts := h.out.snapshot()
		for steps := 0; counts["a"]+counts["b"] != 100; steps++ {
			if steps > 10 {
				t.Fatalf("after Settle and %d steps: %v", steps, counts)
			}
			time.Sleep(DefaultGuardStep)
			synctest.Wait()
			_, now := h.out.snapshot()
			if gained := now["a"] + now["b"] - counts["a"] - counts["b"]; gained > 10 || gained <= 0 {
				t.Fatalf("a step moved %d targets (of 100, MaxMoveFraction %v): %v -> %v", gained, DefaultGuardMoveFraction, counts, now)
			}
			counts = now
		}

		h.members("a", "b", "c", "d", "e")
		h.members("a") // again; this time an operator releases it
		if ok, err := h.s.ReleaseGuard("node"); !ok || err != nil {
			t.Fatalf("ReleaseGuard: %v %v", ok, err)
		}
		synctest.Wait()
		if _, counts := h.out.snapshot(); counts["a"] != 100 {
			t.Fatalf("after the release: %v", counts)
		}

		h.members("a", "b", "c", "d", "e")
		h.members("a", "b", "c", "d") // one leaves: an ordinary failover
		if _, counts := h.out.snapshot(); counts["e"] != 0 || counts["a"]+counts["b"]+counts["c"]+counts["d"] != 100 {
			t.Fatalf("one collector left: %v", counts)
		}
		h.members("a")
		if ok, _ := h.s.ReleaseGuard("node"); !ok {
			t.Fatal("not held")
		}
		synctest.Wait()
		h.members("x", "y") // a's ring of one is gone, but two others are there: no partition
		if _, counts := h.out.snapshot(); counts["x"]+counts["y"] != 100 {
			t.Fatalf("replaced by others: %v", counts)
		}
	})
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// With a probe, the guard tells the collectors that left and still answer
// from the dead: the living keep their share (they stay in the ring), and
// the dead one's targets move in steps of at most MaxMoveFraction of the
// targets, while the guard still holds.
func TestPartitionGuardMovesTheDeadInSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dead := func(ctx context.Context, m watch.Member) error {
			if m.ID == "c" {
				return errors.New("connection refused")
			}
			return nil
		}
		h, r, _ := startRoster(t, Job{Guard: PartitionGuard{Settle: time.Hour, Probe: dead}}, Options{RefreshInterval: time.Hour})
		r.send(h, []string{"a", "b", "c", "d", "e"})
		calls, before := h.out.snapshot()
		r.send(h, []string{"a"}, "b:critical", "c:critical", "d:critical", "e:critical")
		if c, _ := h.out.snapshot(); c != calls {
			t.Fatal("written at once")
		}
		time.Sleep(watch.DefaultProbeInterval + time.Millisecond) // c fails its second probe
		synctest.Wait()
		_, counts := h.out.snapshot()
		if moved := before["c"] - counts["c"]; moved > 10 || moved <= 0 {
			t.Fatalf("the first step moved %d of c's targets: %v -> %v", moved, before, counts)
		}
		steps := 0
		for ; counts["c"] > 0; steps++ {
			if steps > 10 {
				t.Fatalf("c still holds %d targets after %d steps", counts["c"], steps)
			}
			time.Sleep(DefaultGuardStep)
			synctest.Wait()
			_, now := h.out.snapshot()
			if moved := counts["c"] - now["c"]; moved > 10 || moved <= 0 {
				t.Fatalf("a step moved %d of c's targets: %v -> %v", moved, counts, now)
			}
			counts = now
		}
		if steps < 1 || before["c"] <= 10 {
			t.Fatalf("c held %d targets; moved in %d steps after the first", before["c"], steps)
		}
		for _, id := range []string{"a", "b", "d", "e"} {
			if counts[id] < before[id] {
				t.Fatalf("%s, alive, lost targets: %v -> %v", id, before, counts)
			}
		}
		if total := counts["a"] + counts["b"] + counts["d"] + counts["e"]; total != 100 {
			t.Fatalf("%d targets held by the living: %v", total, counts)
		}
		if v := testutil.ToFloat64(h.s.m.guard.WithLabelValues("node")); v != 1 {
			t.Fatalf("promshard_partition_guard_active %v, want 1 while four of five are marked critical", v)
		}
	})
}

// Checks rarely fail in one watcher update: a first collector that leaves
// is failed over at once, but when three more leave within the window, the
// guard holds against the assignment before the first, and gives the first
// its share back. After the window, a leave is counted alone.
func TestPartitionGuardCountsTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r, _ := startRoster(t, Job{Guard: PartitionGuard{Settle: time.Hour}}, Options{RefreshInterval: time.Hour})
		r.send(h, []string{"a", "b", "c", "d", "e"})
		_, before := h.out.snapshot()
		time.Sleep(DefaultGuardWindow) // the five stayed the same for the window
		r.send(h, []string{"a", "b", "c", "d"}, "e:critical")
		if _, now := h.out.snapshot(); now["e"] != 0 {
			t.Fatalf("one of five left: not failed over at once: %v", now)
		}
		time.Sleep(time.Second)
		r.send(h, []string{"a"}, "b:critical", "c:critical", "d:critical", "e:critical")
		if _, now := h.out.snapshot(); !mapsEqual(now, before) {
			t.Fatalf("four of five left within the window: the outputs hold %v, want the assignment before the first, %v", now, before)
		}
		snap, _ := h.s.Snapshot("node")
		if !slices.Equal(snap.Last.Held, []string{"b", "c", "d", "e"}) {
			t.Fatalf("held %v", snap.Last.Held)
		}
		if v := testutil.ToFloat64(h.s.m.guard.WithLabelValues("node")); v != 1 {
			t.Fatalf("promshard_partition_guard_active %v", v)
		}
		// The checks pass again, one update at a time: nothing moves.
		r.send(h, []string{"a", "b", "c"}, "d:critical", "e:critical")
		if _, now := h.out.snapshot(); !mapsEqual(now, before) {
			t.Fatalf("three of five back: %v, want %v", now, before)
		}
		time.Sleep(DefaultGuardWindow + time.Second)
		r.send(h, []string{"a", "b", "c", "d"}, "e:critical")
		if _, now := h.out.snapshot(); !mapsEqual(now, before) {
			t.Fatalf("four of five back, after the window: %v, want %v", now, before)
		}
		r.send(h, []string{"a", "b", "c", "d", "e"})
		if _, now := h.out.snapshot(); !mapsEqual(now, before) {
			t.Fatalf("after the checks passed: %v, want %v", now, before)
		}
		if v := testutil.ToFloat64(h.s.m.guard.WithLabelValues("node")); v != 0 {
			t.Fatalf("promshard_partition_guard_active %v after all came back", v)
		}
		time.Sleep(DefaultGuardWindow)
		r.send(h, []string{"a", "b", "c", "d"}, "e:critical")
		time.Sleep(DefaultGuardWindow + time.Second)
		r.send(h, []string{"a", "b"}, "c:critical", "d:critical", "e:critical") // two of four, after the window: no partition
		if _, now := h.out.snapshot(); now["a"]+now["b"] != 100 {
			t.Fatalf("two of four left after the window: %v", now)
		}
	})
}

// An operator's release stands: a pass soon after it (within Window of the
// move it let happen) does not count the collectors it moved away from as
// leaving anew, and does not hold again or move the targets back.
func TestPartitionGuardReleaseStands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{Guard: PartitionGuard{Settle: time.Minute}}, Options{RefreshInterval: time.Hour})
		h.members("a", "b", "c", "d", "e")
		h.members("a")
		if ok, err := h.s.ReleaseGuard("node"); !ok || err != nil {
			t.Fatalf("ReleaseGuard: %v %v", ok, err)
		}
		synctest.Wait()
		if _, counts := h.out.snapshot(); counts["a"] != 100 {
			t.Fatalf("after the release: %v", counts)
		}
		time.Sleep(time.Second) // within Window of the release's move
		if _, err := h.s.Reshard(context.Background(), "node"); err != nil {
			t.Fatal(err)
		}
		snap, _ := h.s.Snapshot("node")
		if _, counts := h.out.snapshot(); counts["a"] != 100 || len(snap.Last.Held) > 0 {
			t.Fatalf("a pass after the release: %v, held %v", counts, snap.Last.Held)
		}
		if v := testutil.ToFloat64(h.s.m.guard.WithLabelValues("node")); v != 0 {
			t.Fatalf("promshard_partition_guard_active %v after the release", v)
		}
	})
}
