package promshard

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/promshard/promshard/internal/tick"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// PartitionGuard holds a job's assignment when more of its collectors
// leave at once than can plausibly have died together, and the ring left
// is that much smaller: a network partition or a fault of the health checks
// marks most collectors critical at once, and moving every target onto the
// few that still pass would overload them and cascade.
//
// While the guard holds, the outputs stay as they are (the collectors that
// are in fact alive keep scraping their share) and
// promshard_partition_guard_active is 1. With a Probe, the guard asks each
// collector that left whether it is alive: one that answers keeps its share
// (it stays in the ring), one that fails the probe twice in a row is dead,
// and its targets move, MaxMoveFraction of the job's targets per Step,
// never all at once. Once the collectors have stayed the same for Settle,
// the rest of the move is made in the same steps. An operator who knows the
// collectors are dead releases the guard ([Sharder.ReleaseGuard]): the move
// is then made at once. Drained collectors leave on purpose and do not
// count.
type PartitionGuard struct {
	// Share is the fraction of the ring that, leaving at once, holds the
	// assignment; zero means [DefaultGuardShare], 1 turns the guard off.
	Share float64
	// Settle is how long the collectors must stay the same before the
	// guard lets the move happen; zero means [DefaultGuardSettle].
	Settle time.Duration
	// MaxMoveFraction bounds the targets that move in one step, as a
	// fraction of the job's targets (at least one target a step); zero
	// means [DefaultGuardMoveFraction], 1 moves everything in one step.
	MaxMoveFraction float64
	// Step is the time between two steps; zero means [DefaultGuardStep].
	Step time.Duration
	// Probe, when set, tells a collector that left and is alive (a network
	// partition between it and Consul, a fault of its check) from one that
	// is dead, while the guard holds: watch.HTTPProbe reads its /-/ready.
	// It runs every ProbeInterval (zero means watch.DefaultProbeInterval)
	// with ProbeTimeout (zero means watch.DefaultProbeTimeout). Without a
	// probe nothing moves before Settle.
	Probe         watch.Probe
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// Window is how close together leaves count as "at once": collectors
	// rarely fail their checks in one watcher update (each check runs on
	// its own schedule), so the share is counted against the assignment
	// in force before the first change of the window. A leave of a few is
	// applied at once (failover does not wait); when later leaves within
	// the window make more than Share, the collectors that left and are
	// still registered get their share back (unless a probe finds them
	// dead) and the guard holds. Zero means [DefaultGuardWindow]; a
	// negative value counts one watcher update alone.
	Window time.Duration
}

// Defaults of [PartitionGuard].
const (
	DefaultGuardShare        = 0.5
	DefaultGuardSettle       = time.Minute
	DefaultGuardMoveFraction = 0.1
	DefaultGuardStep         = 10 * time.Second
	DefaultGuardWindow       = 10 * time.Second
)

// deadAfter is how many probes in a row a collector must fail to be dead.
const deadAfter = 2

func (g PartitionGuard) validate() error {
	if g.Share < 0 || g.Share > 1 || math.IsNaN(g.Share) || g.Settle < 0 {
		return fmt.Errorf("Job.Guard: Share %v (want 0 to 1), Settle %v (must not be negative)", g.Share, g.Settle)
	}
	if g.MaxMoveFraction < 0 || g.MaxMoveFraction > 1 || math.IsNaN(g.MaxMoveFraction) {
		return fmt.Errorf("Job.Guard.MaxMoveFraction %v: want 0 (the default, %v) to 1", g.MaxMoveFraction, DefaultGuardMoveFraction)
	}
	if g.Step < 0 || g.ProbeInterval < 0 || g.ProbeTimeout < 0 {
		return fmt.Errorf("Job.Guard: Step %v, ProbeInterval %v, ProbeTimeout %v: must not be negative", g.Step, g.ProbeInterval, g.ProbeTimeout)
	}
	return nil
}

// withDefaults fills in the zero fields.
func (g PartitionGuard) withDefaults() PartitionGuard {
	g.Share, g.Settle = cmp.Or(g.Share, DefaultGuardShare), cmp.Or(g.Settle, DefaultGuardSettle)
	g.MaxMoveFraction, g.Step = cmp.Or(g.MaxMoveFraction, DefaultGuardMoveFraction), cmp.Or(g.Step, DefaultGuardStep)
	g.ProbeInterval = cmp.Or(g.ProbeInterval, watch.DefaultProbeInterval)
	g.ProbeTimeout = cmp.Or(g.ProbeTimeout, watch.DefaultProbeTimeout)
	g.Window = cmp.Or(g.Window, DefaultGuardWindow)
	return g
}

// guardPass is the guard's word on one pass.
type guardPass struct {
	hold  bool           // nothing moves: the outputs, and what they were written from, stay
	held  []string       // the collectors that left while the guard holds
	alive []watch.Member // collectors that left but answer their probe: in the ring for this pass
	// limit bounds the targets that move in this pass (shard.Step); -1
	// means no bound, 0 that none moves before the next step.
	limit int
}

// guard is a job's partition guard: whether it holds, for which set of
// collectors, since when, whether an operator released it, what the probes
// say of the collectors that left, and the steps of a bounded move.
type guard struct {
	cfg  PartitionGuard
	job  string
	m    *metrics
	log  *slog.Logger
	poke func() // reshard the job: the settle time is over, a step is due, a probe changed

	mu       sync.Mutex
	set      string    // the collectors the guard holds against
	since    time.Time // when they became that set
	active   bool
	released bool // by an operator, for this set
	timer    *time.Timer
	stepping bool           // the settle time is over: the rest moves in steps
	lastStep time.Time      // of the bounded move under way; zero: the next step is due
	stepT    *time.Timer    // pokes the job when the next step is due
	probeOf  []watch.Member // the collectors that left that can be probed
	kick     chan struct{}  // size 1: probe now, the collectors to probe changed
	fails    map[string]int // probes failed in a row, by collector; absent: not probed yet
	// The assignments the outputs held: cur the last written, since when
	// its collectors were those, and base the last one whose collectors
	// had stayed the same for Window before they changed.
	cur, base *shard.Assignment
	curSince  time.Time
	// let are the collectors an operator let go (ReleaseGuard): while the
	// reference assignment still has them, they are not counted as leaving
	// again, so that a pass soon after the release does not hold once more
	// and move their targets back. One that is present again is taken off.
	let      map[string]bool
	lastHeld []string // the collectors the last check found gone
}

// wrote records what the outputs hold from now on.
func (g *guard) wrote(a *shard.Assignment, now time.Time) {
	if g == nil || a == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.cur == nil:
		g.base, g.curSince = a, now
	case !sameMembers(g.cur, a):
		if now.Sub(g.curSince) >= g.cfg.Window {
			g.base = g.cur
		}
		g.curSince = now
	case g.base == g.cur:
		g.base = a
	}
	g.cur = a
}

// reference is the assignment the share of leavers is counted against:
// the one before the changes of the window, while one is going on.
func (g *guard) reference(written *shard.Assignment, now time.Time) *shard.Assignment {
	if g.cfg.Window < 0 || g.cur != written || g.base == nil || now.Sub(g.curSince) >= g.cfg.Window {
		return written
	}
	return g.base
}

// sameMembers reports whether a and b have the same collectors.
func sameMembers(a, b *shard.Assignment) bool {
	return slices.EqualFunc(a.Members, b.Members, func(x, y shard.Member) bool { return x.ID == y.ID })
}

// check decides a pass: prev is what the outputs hold, members the ring's
// collectors, drained and sick the other registered ones, targets the
// job's target count.
func (g *guard) check(written *shard.Assignment, members, drained, sick []watch.Member, targets int, now time.Time) guardPass {
	p := guardPass{limit: -1}
	if g == nil || written == nil || g.cfg.Share >= 1 {
		return p
	}
	present := map[string]bool{}
	for _, m := range slices.Concat(members, drained) {
		present[m.ID] = true
	}
	g.mu.Lock()
	prev := g.reference(written, now)
	var held []string
	for _, m := range prev.Members {
		switch {
		case present[m.ID]:
			delete(g.let, m.ID)
		case !g.let[m.ID]:
			held = append(held, m.ID)
		}
	}
	g.lastHeld = slices.Clone(held)
	g.mu.Unlock()
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	set := strings.Join(ids, ",")
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stepping && set == g.set {
		return g.step(p, targets, now)
	}
	// A partition leaves few collectors: more than Share of the ring gone,
	// and the ring that is left as much smaller (collectors that joined
	// meanwhile, a first assignment made before most had passed their
	// checks, make it no partition).
	healing := g.active && len(held) > 0 // collectors come back one by one: the rest are still held
	if n := float64(len(prev.Members)); !healing && (float64(len(held)) <= g.cfg.Share*n || float64(len(members)) >= (1-g.cfg.Share)*n) {
		g.end("the collectors came back, or few enough left")
		return p
	}
	if set != g.set {
		g.set, g.since, g.released, g.stepping, g.lastStep = set, now, false, false, time.Time{}
		if g.timer != nil {
			g.timer.Stop()
		}
		g.timer = time.AfterFunc(g.cfg.Settle, g.poke)
	}
	if g.released {
		g.end("an operator released it")
		return p
	}
	if now.Sub(g.since) >= g.cfg.Settle {
		g.end(fmt.Sprintf("the collectors stayed the same for %v", now.Sub(g.since).Round(time.Second)))
		g.set, g.stepping = set, true
		return g.step(p, targets, now)
	}
	if !g.active {
		g.active = true
		g.m.guard.WithLabelValues(g.job).Set(1)
		g.log.Error("partition guard: too many collectors left at once; the assignment stays as it is", "job", g.job,
			"left", len(held), "of", len(prev.Members), "collectors", held, "until", g.since.Add(g.cfg.Settle).Format(time.RFC3339))
	}
	p.held = held
	before := len(g.probeOf)
	g.probeOf = g.probeOf[:0]
	dead := 0
	for _, m := range sick {
		if !slices.Contains(held, m.ID) {
			continue
		}
		g.probeOf = append(g.probeOf, m)
		fails, probed := g.fails[m.ID]
		switch verdict(fails, probed) {
		case probeAlive:
			m.State = ""
			p.alive = append(p.alive, m)
		case probeDead:
			dead++
		}
	}
	if len(g.probeOf) != before && g.kick != nil {
		select {
		case g.kick <- struct{}{}:
		default:
		}
	}
	if g.cfg.Probe == nil || dead == 0 {
		if sameMembers(written, prev) {
			p.hold, p.alive = true, nil
			return p
		}
		// The first leaves of the window were applied: give those that are
		// still registered their share back, as the outputs held it.
		p.alive = p.alive[:0]
		for _, m := range g.probeOf {
			m.State = ""
			p.alive = append(p.alive, m)
		}
		return p
	}
	return g.step(p, targets, now)
}

// step bounds a pass of a move made in steps.
func (g *guard) step(p guardPass, targets int, now time.Time) guardPass {
	switch {
	case g.cfg.MaxMoveFraction >= 1:
		p.limit = -1
	case !g.lastStep.IsZero() && now.Sub(g.lastStep) < g.cfg.Step:
		p.limit = 0
	default:
		p.limit = max(1, int(math.Ceil(g.cfg.MaxMoveFraction*float64(targets))))
	}
	return p
}

// stepped records a pass made under p: left moves remain after it.
func (g *guard) stepped(p guardPass, moved, left int, now time.Time) {
	if g == nil || p.limit < 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if left == 0 {
		if g.stepping {
			g.stepping, g.set = false, ""
			g.log.Info("partition guard: the move is done", "job", g.job)
		}
		g.lastStep = time.Time{}
		return
	}
	if p.limit > 0 {
		g.lastStep = now
		if g.stepT != nil {
			g.stepT.Stop()
		}
		g.stepT = time.AfterFunc(g.cfg.Step, g.poke)
		g.log.Warn("partition guard: a bounded step of the move", "job", g.job, "moved", moved, "left", left,
			"next_step", now.Add(g.cfg.Step).Format(time.RFC3339))
	}
}

// end lifts the guard, if it held.
func (g *guard) end(why string) {
	if g.active {
		g.active = false
		g.m.guard.WithLabelValues(g.job).Set(0)
		g.log.Warn("partition guard released: the move goes on", "job", g.job, "why", why)
	}
	g.set, g.released, g.stepping, g.lastStep = "", false, false, time.Time{}
	g.probeOf, g.fails = nil, nil
}

// release lets the move happen at once for the collectors as they are.
// It reports whether the guard was holding, or moving in steps.
func (g *guard) release() bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	was := g.active || g.stepping
	g.released, g.stepping = g.active, false
	if was {
		if g.let == nil {
			g.let = map[string]bool{}
		}
		for _, id := range g.lastHeld {
			g.let[id] = true
		}
	}
	if was && !g.active {
		g.set = "" // stepping after Settle: the next pass moves the rest at once
	}
	return was
}

// probeLoop probes, every ProbeInterval, the collectors that left while
// the guard holds, and pokes the job when one is found alive or dead.
func (g *guard) probeLoop(ctx context.Context) {
	tick.Every(ctx, g.cfg.ProbeInterval, g.kick, func() bool {
		g.mu.Lock()
		ms := slices.Clone(g.probeOf)
		g.mu.Unlock()
		if len(ms) == 0 {
			return true
		}
		failed := make([]bool, len(ms))
		var wg sync.WaitGroup
		for i, m := range ms {
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, g.cfg.ProbeTimeout)
				defer cancel()
				failed[i] = g.cfg.Probe(pctx, m) != nil
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return false
		}
		changed := false
		g.mu.Lock()
		if g.fails == nil {
			g.fails = map[string]int{}
		}
		for i, m := range ms {
			before, probed := g.fails[m.ID]
			now := 0
			if failed[i] {
				now = before + 1
			}
			g.fails[m.ID] = now
			was, is := verdict(before, probed), verdict(now, true)
			changed = changed || was != is
			if is == probeDead && was != probeDead {
				g.log.Error("partition guard: a collector that left fails its probe: it is dead, its targets move in steps",
					"job", g.job, "collector", m.ID)
			}
		}
		g.mu.Unlock()
		if changed {
			g.poke()
		}
		return true
	})
}

// What the probes say of a collector that left.
const (
	probeUnknown = iota // not probed yet, or failed fewer than deadAfter times in a row
	probeAlive
	probeDead
)

// verdict is what fails probes failed in a row say.
func verdict(fails int, probed bool) int {
	switch {
	case !probed:
		return probeUnknown
	case fails == 0:
		return probeAlive
	case fails >= deadAfter:
		return probeDead
	}
	return probeUnknown
}
