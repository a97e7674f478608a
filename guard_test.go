package promshard

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
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
		time.Sleep(time.Minute + time.Millisecond) // the set stayed the same for Settle
		synctest.Wait()
		if _, counts := h.out.snapshot(); counts["a"]+counts["b"] != 100 {
			t.Fatalf("after Settle: %v", counts)
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
