package promshard

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promshard/promshard/watch"
)

// rosterSource is a fake source that also keeps a roster of registered but
// unhealthy collectors; the test sets it before sending a member set.
type rosterSource struct {
	*fakeSource
	mu   sync.Mutex
	sick []watch.Member
}

func (r *rosterSource) Unhealthy() []watch.Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]watch.Member{}, r.sick...)
}

// send sends the healthy members and, as the roster, the unhealthy ones
// (id:state).
func (r *rosterSource) send(h *harness, healthy []string, sick ...string) {
	r.mu.Lock()
	r.sick = nil
	for _, s := range sick {
		id, state, _ := strings.Cut(s, ":")
		m := members(id)[0]
		m.State = state
		r.sick = append(r.sick, m)
	}
	r.mu.Unlock()
	r.sets <- members(healthy...)
	synctest.Wait()
}

func startRoster(t *testing.T, job Job, opts Options) (*harness, *rosterSource, *fakeScrapes) {
	t.Helper()
	f := &fakeScrapes{scraping: map[string]bool{}}
	var r *rosterSource
	h := startWith(t, job, opts, func(h *harness) {
		if h.s.reader != nil {
			h.s.reader = f
		}
		r = &rosterSource{fakeSource: h.src}
		h.runSrc = r
	})
	f.out = h.out
	return h, r, f
}

func (h *harness) holds(id string) (present bool, targets int) {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	gs, ok := h.out.last[id]
	return ok, len(flat(gs))
}

// A collector that fails its check but stays registered gets an empty list
// (not a removed file), pushed until it succeeds however long that takes;
// it gets its file back when it comes back; once deregistered its file is
// removed and nothing is pushed any more.
func TestLeaverGetsEmptyListUntilGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r, _ := startRoster(t, Job{}, Options{})
		r.send(h, []string{"a", "b", "c"})
		_, before := h.holds("c")
		h.rl.mu.Lock()
		h.rl.fail["c"] = 15 // more than DefaultDepartedReloadAttempts
		h.rl.mu.Unlock()
		r.send(h, []string{"a", "b"}, "c:critical")
		if present, n := h.holds("c"); !present || n != 0 {
			t.Fatalf("a registered leaver's output: present %v, %d targets; want an empty list", present, n)
		}
		snap, _ := h.s.Snapshot("node")
		if len(snap.Last.Leaving) != 1 || snap.Last.Leaving[0] != "c" {
			t.Fatalf("report: leaving %v", snap.Last.Leaving)
		}
		if len(snap.Leavers) != 1 || snap.Leavers[0].State != watch.StateCritical || !slices.Contains(snap.PendingReloads, "c") {
			t.Fatalf("snapshot: leavers %+v, pending reloads %v", snap.Leavers, snap.PendingReloads)
		}
		time.Sleep(10 * time.Minute) // backoff up to 30 s: well past 15 attempts
		synctest.Wait()
		if n := h.rl.count("c"); n < 16 {
			t.Fatalf("c's empty list pushed %d times; want retries until one succeeds (16)", n)
		}
		// It comes back: its file is back.
		r.send(h, []string{"a", "b", "c"})
		if _, n := h.holds("c"); n != before {
			t.Fatalf("c came back with %d targets, had %d", n, before)
		}
		// It fails again and is deregistered: the file goes, pushes stop.
		h.rl.mu.Lock()
		h.rl.fail["c"] = 1000
		h.rl.mu.Unlock()
		r.send(h, []string{"a", "b"}, "c:critical")
		r.send(h, []string{"a", "b"})
		if present, _ := h.holds("c"); present {
			t.Fatal("a deregistered collector's output is still there")
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		n := h.rl.count("c")
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if h.rl.count("c") != n {
			t.Fatal("pushes to a deregistered collector go on")
		}
	})
}

// A drained collector (maintenance, or the drain tag) is a planned move:
// with the hand-off it keeps its targets until their new owners scrape
// them, then gets an empty list; drains are counted.
func TestDrainIsAPlannedMove(t *testing.T) {
	for _, how := range []string{"maintenance", "tag"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, r, f := startRoster(t, Job{DrainTag: "drain"}, Options{Handoff: HandoffOptions{Enabled: true}})
				r.send(h, []string{"a", "b", "c"})
				_, had := h.holds("c")
				if how == "maintenance" {
					r.send(h, []string{"a", "b"}, "c:maintenance")
				} else {
					ms := members("a", "b", "c")
					ms[2].Tags = []string{"drain"}
					r.sets <- ms
					synctest.Wait()
				}
				if _, n := h.holds("c"); n != had {
					t.Fatalf("c lost its targets before their new owners scrape them: %d of %d", n, had)
				}
				if snap, _ := h.s.Snapshot("node"); len(snap.Leavers) != 1 || snap.Leavers[0].State != watch.StateMaintenance {
					t.Fatalf("snapshot: leavers %+v", snap.Leavers)
				}
				f.set("a", true)
				f.set("b", true)
				time.Sleep(handoffPoll + time.Millisecond)
				synctest.Wait()
				if present, n := h.holds("c"); !present || n != 0 {
					t.Fatalf("after the hand-off c: present %v, %d targets; want an empty list", present, n)
				}
				if countHolders(t, h, 1) != 0 {
					t.Fatal("targets still held twice after the drain")
				}
				if v := testutil.ToFloat64(h.s.m.drains.WithLabelValues("node")); v != 1 {
					t.Fatalf("drains %v, want 1", v)
				}
			})
		})
	}
}
