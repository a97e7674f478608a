package promshard

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// A cold start writes nothing until Quorum.MinMembers collectors are
// healthy; then it writes at once, and failover is never held back.
func TestQuorumHoldsTheFirstWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{Quorum: Quorum{MinMembers: 3}, Guard: PartitionGuard{Share: 1}}, Options{})
		h.members("a", "b")
		if calls, _ := h.out.snapshot(); calls != 0 {
			t.Fatalf("%d writes with 2 of 3 collectors", calls)
		}
		snap, _ := h.s.Snapshot("node")
		if snap.Ready() || snap.Last.Err == nil || !strings.Contains(snap.Last.Err.Error(), "waiting for quorum: 2 of 3") {
			t.Fatalf("before quorum: ready %v, err %v", snap.Ready(), snap.Last.Err)
		}
		h.members("a", "b", "c")
		if calls, counts := h.out.snapshot(); calls != 1 || len(counts) != 3 {
			t.Fatalf("at quorum: %d writes, %v", calls, counts)
		}
		h.members("a") // two die: failover is not held back
		if _, counts := h.out.snapshot(); counts["a"] != 100 {
			t.Fatalf("after two died: %v", counts)
		}
	})
}

// After Quorum.Wait the job writes with the collectors it has, unless
// Quorum.Refuse.
func TestQuorumWait(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			h := start(t, Job{Quorum: Quorum{MinMembers: 3, Wait: 2 * time.Minute, Refuse: refuse}}, Options{RefreshInterval: time.Minute})
			h.members("a", "b")
			time.Sleep(3*time.Minute + time.Millisecond)
			synctest.Wait()
			calls, _ := h.out.snapshot()
			if refuse != (calls == 0) {
				t.Fatalf("refuse %v: %d writes after the wait", refuse, calls)
			}
		})
	}
}
