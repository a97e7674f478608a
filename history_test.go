package promshard

import (
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// A collector that leaves and comes back is two events naming it, with the
// targets that moved; a refresh that changes nothing is none.
func TestEventsNameWhatMoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{RefreshInterval: time.Minute})
		h.members("a", "b", "c")
		_, counts := h.out.snapshot()
		h.members("a", "b")
		h.members("a", "b", "c")
		time.Sleep(time.Minute + time.Millisecond) // a refresh: no event
		synctest.Wait()
		snap, _ := h.s.Snapshot("node")
		var kinds []string
		for _, e := range snap.Events {
			kinds = append(kinds, e.Kind.String())
		}
		if !slices.Equal(kinds, []string{"join", "leave"}) {
			t.Fatalf("events %v, want [join leave] (newest first)", kinds)
		}
		leave, join := snap.Events[1], snap.Events[0]
		if !slices.Equal(leave.Collectors, []string{"c"}) || leave.Moved != counts["c"] || len(leave.Targets) != min(counts["c"], eventTargetN) ||
			!strings.Contains(leave.Text, "c left (gone from the registry): ") || !strings.Contains(leave.Text, "moved to a, b") {
			t.Fatalf("leave event %+v (c held %d)", leave, counts["c"])
		}
		if !slices.Equal(join.Collectors, []string{"c"}) || join.Moved != counts["c"] {
			t.Fatalf("join event %+v", join)
		}
	})
}

// The history keeps at least historyKeep events, and older ones only
// while they are younger than historyAge.
func TestHistoryBounds(t *testing.T) {
	var h history
	old := time.Now().Add(-2 * historyAge)
	for i := range historyKeep + 50 {
		h.add(Event{Time: old.Add(time.Duration(i) * time.Second), Kind: eventTargets})
	}
	if n := len(h.list()); n != historyKeep {
		t.Fatalf("%d old events kept, want %d", n, historyKeep)
	}
	for range historyMax + 10 {
		h.add(Event{Time: time.Now(), Kind: eventTargets})
	}
	if n := len(h.list()); n != historyMax {
		t.Fatalf("%d recent events kept, want at most %d", n, historyMax)
	}
	h.add(Event{Time: time.Now(), Kind: eventFailed, Text: "x"}, Event{Time: time.Now(), Kind: eventFailed, Text: "x"})
	if l := h.list(); l[0].Kind != eventFailed || l[1].Kind == eventFailed {
		t.Fatal("a repeated failure was recorded twice")
	}
}
