package promshard

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// PartitionGuard holds a job's assignment when more of its collectors
// leave at once than can plausibly have died together, and the ring left
// is that much smaller: a network
// partition or a fault of the health checks marks most collectors critical
// at once, and moving every target onto the few that still pass would
// overload them and cascade. While the guard holds, the outputs stay as
// they are (the collectors that are in fact alive keep scraping their
// share) and promshard_partition_guard_active is 1; the move is made once
// the collectors have stayed the same for Settle, or when an operator
// releases the guard ([Sharder.ReleaseGuard]). Drained collectors leave on
// purpose and do not count.
type PartitionGuard struct {
	// Share is the fraction of the ring that, leaving at once, holds the
	// assignment; zero means [DefaultGuardShare], 1 turns the guard off.
	Share float64
	// Settle is how long the collectors must stay the same before the
	// guard lets the move happen; zero means [DefaultGuardSettle].
	Settle time.Duration
}

// Defaults of [PartitionGuard].
const (
	DefaultGuardShare  = 0.5
	DefaultGuardSettle = time.Minute
)

func (g PartitionGuard) validate() error {
	if g.Share < 0 || g.Share > 1 || g.Settle < 0 {
		return fmt.Errorf("Job.Guard: Share %v (want 0 to 1), Settle %v (must not be negative)", g.Share, g.Settle)
	}
	return nil
}

// guard is a job's partition guard: whether it holds, for which set of
// collectors, since when, and whether an operator released it.
type guard struct {
	cfg  PartitionGuard
	job  string
	m    *metrics
	log  *slog.Logger
	poke func() // reshard the job: the settle time is over

	mu       sync.Mutex
	set      string    // the collectors the guard holds against
	since    time.Time // when they became that set
	active   bool
	released bool // by an operator, for this set
	timer    *time.Timer
}

// check decides a pass: held lists the collectors that left since prev
// while the guard holds the assignment (nil: the pass goes on).
func (g *guard) check(prev *shard.Assignment, members, drained []watch.Member, now time.Time) (held []string) {
	if g == nil || prev == nil || g.cfg.Share >= 1 {
		return nil
	}
	present := map[string]bool{}
	for _, m := range slices.Concat(members, drained) {
		present[m.ID] = true
	}
	for _, m := range prev.Members {
		if !present[m.ID] {
			held = append(held, m.ID)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// A partition leaves few collectors: more than Share of the ring gone,
	// and the ring that is left as much smaller (collectors that joined
	// meanwhile, a first assignment made before most had passed their
	// checks, make it no partition).
	if n := float64(len(prev.Members)); float64(len(held)) <= g.cfg.Share*n || float64(len(members)) >= (1-g.cfg.Share)*n {
		g.end("the collectors came back, or few enough left")
		return nil
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	set := strings.Join(ids, ",")
	if set != g.set {
		g.set, g.since, g.released = set, now, false
		if g.timer != nil {
			g.timer.Stop()
		}
		g.timer = time.AfterFunc(g.cfg.Settle, g.poke)
	}
	if g.released || now.Sub(g.since) >= g.cfg.Settle {
		g.end(fmt.Sprintf("the collectors stayed the same for %v, or an operator released it", now.Sub(g.since).Round(time.Second)))
		return nil
	}
	if !g.active {
		g.active = true
		g.m.guard.WithLabelValues(g.job).Set(1)
		g.log.Error("partition guard: too many collectors left at once; the assignment stays as it is", "job", g.job,
			"left", len(held), "of", len(prev.Members), "collectors", held, "until", g.since.Add(g.cfg.Settle).Format(time.RFC3339))
	}
	return held
}

// end lifts the guard, if it held.
func (g *guard) end(why string) {
	if g.active {
		g.active = false
		g.m.guard.WithLabelValues(g.job).Set(0)
		g.log.Warn("partition guard released: the move goes on", "job", g.job, "why", why)
	}
	g.set, g.released = "", false
}

// release lets the move happen at once for the collectors as they are.
// It reports whether the guard was holding.
func (g *guard) release() bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.released = g.active
	return g.active
}
