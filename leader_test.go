package promshard

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promshard/promshard/elect"
	"github.com/promshard/promshard/filesd"
)

// fakeElector is an election the test decides: leading is the copy's own
// view, holds what the source of truth says (a paused leader believes it
// leads while it no longer holds the lock).
type fakeElector struct {
	mu        sync.Mutex
	leading   bool
	holds     bool
	changed   chan<- struct{}
	published []elect.Epoch
	checks    int
}

func (f *fakeElector) Run(ctx context.Context, changed chan<- struct{}) error {
	f.mu.Lock()
	f.changed = changed
	f.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (f *fakeElector) Leading() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leading
}

func (f *fakeElector) Leader() string { return "copy-1" }

func (f *fakeElector) Check(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	if !f.leading || !f.holds {
		return elect.ErrNotLeader
	}
	return nil
}

func (f *fakeElector) Publish(ctx context.Context, e elect.Epoch) (elect.Epoch, error) {
	if err := f.Check(ctx); err != nil {
		return elect.Epoch{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e.Epoch = uint64(len(f.published) + 1)
	f.published = append(f.published, e)
	return e, nil
}

func (f *fakeElector) Published(_ context.Context, job string) (elect.Epoch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.published) == 0 {
		return elect.Epoch{}, nil
	}
	return f.published[len(f.published)-1], nil
}

// lead sets both views and tells the Sharder.
func (f *fakeElector) lead(v bool) {
	f.mu.Lock()
	f.leading, f.holds = v, v
	ch := f.changed
	f.mu.Unlock()
	ch <- struct{}{}
	synctest.Wait()
}

func (f *fakeElector) epochs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.published)
}

// A standby computes and writes nothing; on taking the lead it writes at
// once and publishes epoch 1; an unchanged refresh publishes nothing, a new
// plan the next epoch; a leader that no longer holds the lock (paused, then
// resumed) writes and reloads nothing.
func TestLeaderElection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		el := &fakeElector{}
		sd := &filesd.Handler{}
		h := start(t, Job{Outputs: []Output{&output{}, sd}}, Options{Elector: el})
		h.out = h.s.jobs[0].cfg.Outputs[0].(*output)
		synctest.Wait()
		h.members("a", "b", "c")
		if calls, _ := h.out.snapshot(); calls != 0 {
			t.Fatalf("a standby wrote %d times", calls)
		}
		snap, _ := h.s.Snapshot("node")
		if snap.Role != RoleStandby || snap.Assignment == nil || !snap.Last.Standby || snap.Last.Err != nil {
			t.Fatalf("standby snapshot: role %q, assignment %v, last %+v", snap.Role, snap.Assignment != nil, snap.Last)
		}
		if !snap.Ready() || snap.Leader != "copy-1" { // web: /-/ready 200 "standby (leader: copy-1)", /sd 503
			t.Fatalf("a standby is ready with the leader named: %v %q", snap.Ready(), snap.Leader)
		}

		el.lead(true)
		calls, counts := h.out.snapshot()
		if calls != 1 || counts["a"]+counts["b"]+counts["c"] != 100 || el.epochs() != 1 {
			t.Fatalf("after the takeover: %d writes %v, %d epochs; want 1 write of 100 targets, epoch 1", calls, counts, el.epochs())
		}
		if snap, _ = h.s.Snapshot("node"); snap.Role != RoleLeader || snap.Epoch.Epoch != 1 || !snap.Agrees ||
			!strings.Contains(snap.Last.Reason.String(), "leader") {
			t.Fatalf("leader snapshot: role %q epoch %+v agrees %v reason %q", snap.Role, snap.Epoch, snap.Agrees, snap.Last.Reason)
		}
		if rec := httptest.NewRecorder(); true {
			sd.ServeHTTP(rec, httptest.NewRequest("GET", "/a", nil))
			if rec.Code != 200 || !strings.Contains(rec.Body.String(), ":9100") {
				t.Fatalf("http_sd on the leader: %d %s", rec.Code, rec.Body)
			}
		}
		if v := testutil.ToFloat64(h.s.m.leader.WithLabelValues("node")); v != 1 {
			t.Fatalf("promshard_leader %v", v)
		}

		if _, err := h.s.Reshard(context.Background(), "node"); err != nil { // same plan: checked, not published
			t.Fatal(err)
		}
		if el.epochs() != 1 {
			t.Fatalf("an unchanged plan was published again: %d epochs", el.epochs())
		}
		h.members("a", "b", "c", "d")
		if el.epochs() != 2 {
			t.Fatalf("a new plan: %d epochs, want 2", el.epochs())
		}
		reloadsBefore := h.rl.count("a") + h.rl.count("b") + h.rl.count("c") + h.rl.count("d")

		// Paused: it still believes it leads, but another copy holds the
		// lock. Nothing is written, published or reloaded.
		el.mu.Lock()
		el.holds = false
		el.mu.Unlock()
		callsBefore, _ := h.out.snapshot()
		h.members("a", "b")
		if calls, _ := h.out.snapshot(); calls != callsBefore || el.epochs() != 2 {
			t.Fatalf("a fenced leader wrote (%d → %d) or published (%d)", callsBefore, calls, el.epochs())
		}
		if snap, _ = h.s.Snapshot("node"); !strings.Contains(snap.Last.Err.Error(), "not written") {
			t.Fatalf("fenced reshard: %v", snap.Last.Err)
		}
		h.s.jobs[0].reloads.Add(h.s.jobs[0].collectors([]string{"a"}, members("a"), nil)...)
		synctest.Wait()
		if n := h.rl.count("a") + h.rl.count("b") + h.rl.count("c") + h.rl.count("d"); n != reloadsBefore {
			t.Fatalf("a fenced leader reloaded: %d → %d", reloadsBefore, n)
		}
		el.lead(false)
		if snap, _ = h.s.Snapshot("node"); snap.Role != RoleStandby || snap.Last.Err != nil || !snap.Last.Standby {
			t.Fatalf("after losing the lead: role %q, last %+v", snap.Role, snap.Last)
		}
		if v := testutil.ToFloat64(h.s.m.leaderChanges); v != 2 {
			t.Fatalf("promshard_leader_changes_total %v, want 2", v)
		}
	})
}

// A job in self mode is not elected: it writes its own collector's file
// whoever leads, and reports the published epoch it agrees with.
func TestSelfModeReportsTheEpochItAgreesWith(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		el := &fakeElector{}
		h := start(t, Job{Self: "a"}, Options{Elector: el})
		synctest.Wait()
		h.members("a", "b")
		if calls, counts := h.out.snapshot(); calls != 1 || len(counts) != 1 || counts["a"] == 0 {
			t.Fatalf("self mode under an election: %d writes %v; want a's file written", calls, counts)
		}
		snap, _ := h.s.Snapshot("node")
		if snap.Role != "" || snap.Epoch.Epoch != 0 || snap.Agrees {
			t.Fatalf("nothing published yet: role %q epoch %+v agrees %v", snap.Role, snap.Epoch, snap.Agrees)
		}
		j := h.s.jobs[0]
		el.mu.Lock()
		el.published = append(el.published, elect.Epoch{Job: "node", Epoch: 7, Hash: planHash(j.asgKey)})
		el.mu.Unlock()
		if _, err := h.s.Reshard(context.Background(), "node"); err != nil {
			t.Fatal(err)
		}
		if snap, _ = h.s.Snapshot("node"); snap.Epoch.Epoch != 7 || !snap.Agrees {
			t.Fatalf("epoch %+v agrees %v; want 7, agreeing", snap.Epoch, snap.Agrees)
		}
		el.mu.Lock()
		el.published = append(el.published, elect.Epoch{Job: "node", Epoch: 8, Hash: "another plan"})
		el.mu.Unlock()
		if _, err := h.s.Reshard(context.Background(), "node"); err != nil {
			t.Fatal(err)
		}
		if snap, _ = h.s.Snapshot("node"); snap.Epoch.Epoch != 8 || snap.Agrees {
			t.Fatalf("epoch %+v agrees %v; want 8, not agreeing", snap.Epoch, snap.Agrees)
		}
	})
}

// A leader that no longer holds the lock (paused while another copy took
// over and wrote) does not "repair" the files the new leader wrote: a
// repair is a write, fenced like any other.
func TestFencedLeaderRepairsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		el := &fakeElector{}
		dir := filepath.Join(t.TempDir(), "out")
		d, err := filesd.NewDir(filesd.DirOptions{Dir: dir, Create: true})
		if err != nil {
			t.Fatal(err)
		}
		h := start(t, Job{Outputs: []Output{d}}, Options{Elector: el, RefreshInterval: time.Minute})
		synctest.Wait()
		h.members("a", "b")
		el.lead(true)
		el.mu.Lock()
		el.holds = false // paused: another copy leads and writes
		el.mu.Unlock()
		theirs := []byte("[]\n")
		if err := os.WriteFile(filepath.Join(dir, "a.json"), theirs, 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute + time.Millisecond) // a refresh finds a.json changed
		synctest.Wait()
		if got, _ := os.ReadFile(filepath.Join(dir, "a.json")); string(got) != string(theirs) {
			t.Fatalf("a fenced leader rewrote the new leader's file: %q", got)
		}
		if snap, _ := h.s.Snapshot("node"); snap.Last.Err == nil || !strings.Contains(snap.Last.Err.Error(), "not repaired") {
			t.Fatalf("the refused repair: %v", snap.Last.Err)
		}
	})
}
