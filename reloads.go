package promshard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/promshard/promshard/internal/backoff"
	"github.com/promshard/promshard/reload"
)

// reloadQueue reloads a job's collectors in the background. A collector
// stays "to reload" until a reload succeeds: a failure is retried with
// backoff, a collector whose output changes again while its reload runs is
// reloaded once more afterwards, and a hung reload occupies one slot of the
// job's concurrency without delaying anything else. A collector that left
// the member set is tried while it is still registered (its empty list
// must reach it) and given up once it is gone; when the source keeps no
// roster of registered collectors, after Options.DepartedReloadAttempts.
type reloadQueue struct {
	j    *job
	pool *reload.Pool
	none bool // reload.None: nothing to do
	sem  chan struct{}
	kick chan struct{}

	mu       sync.Mutex
	want     map[string]reload.Collector
	inflight map[string]bool
	fails    map[string]int
	due      map[string]time.Time
	wg       sync.WaitGroup
}

func newReloadQueue(j *job, pool *reload.Pool) *reloadQueue {
	_, none := j.cfg.Reloader.(reload.None)
	return &reloadQueue{j: j, pool: pool, none: none,
		sem:  make(chan struct{}, cmp.Or(j.cfg.ReloadConcurrency, reload.DefaultConcurrency)),
		kick: make(chan struct{}, 1), want: map[string]reload.Collector{}, inflight: map[string]bool{},
		fails: map[string]int{}, due: map[string]time.Time{}}
}

// add queues collectors for a reload.
func (q *reloadQueue) add(cs []reload.Collector) {
	if q.none || len(cs) == 0 {
		return
	}
	q.mu.Lock()
	for _, c := range cs {
		q.want[c.ID] = c
	}
	q.mu.Unlock()
	q.poke()
}

func (q *reloadQueue) poke() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// now reloads collectors at once and waits; failures stay queued for the
// background loop (when it runs).
func (q *reloadQueue) now(ctx context.Context, cs []reload.Collector) reload.Results {
	if q.none || len(cs) == 0 {
		return nil
	}
	if err := q.j.checkLeader(ctx); err != nil { // fenced: the leader reloads
		res := make(reload.Results, len(cs))
		for i, c := range cs {
			res[i] = reload.Result{Collector: c, Err: fmt.Errorf("not reloaded: %w", err)}
		}
		return res
	}
	res := q.pool.Reload(ctx, cs)
	q.mu.Lock()
	for _, r := range res {
		id := r.Collector.ID
		if r.Err == nil {
			delete(q.fails, id)
			delete(q.due, id)
			continue
		}
		q.failed(r.Collector)
	}
	q.mu.Unlock()
	return res
}

// failed records a failed reload; q.mu is held.
func (q *reloadQueue) failed(c reload.Collector) {
	o := q.j.s.opts
	q.fails[c.ID]++
	n := q.fails[c.ID]
	// A collector that is still registered may still run: keep trying
	// (its empty list must reach it). One that is gone, or not a member
	// with nobody to tell, is given up.
	if known, registered := q.j.registration(c.ID); !registered && (known || n >= o.DepartedReloadAttempts) {
		o.Logger.Warn("giving up reloading a collector that is gone", "job", q.j.cfg.Name,
			"collector", c.ID, "attempts", n)
		delete(q.fails, c.ID)
		delete(q.due, c.ID)
		q.pool.Forget(c.ID)
		return
	}
	if _, newer := q.want[c.ID]; !newer {
		q.want[c.ID] = c
	}
	q.due[c.ID] = time.Now().Add(backoff.Delay(o.ReloadBackoffMin, o.ReloadBackoffMax, n))
}

// pending lists collectors whose reload has not succeeded yet.
func (q *reloadQueue) pending() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := slices.Collect(maps.Keys(q.want))
	for id := range q.inflight {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// run reloads queued collectors until ctx is done.
func (q *reloadQueue) run(ctx context.Context) {
	defer q.wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		now := time.Now()
		var next time.Time
		for _, id := range slices.Sorted(maps.Keys(q.want)) {
			if q.inflight[id] {
				continue
			}
			if d := q.due[id]; d.After(now) {
				if next.IsZero() || d.Before(next) {
					next = d
				}
				continue
			}
			c := q.want[id]
			delete(q.want, id)
			q.inflight[id] = true
			q.wg.Go(func() { q.reload(ctx, c) })
		}
		q.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-q.kick:
		case <-timer.C:
		}
	}
}

func (q *reloadQueue) reload(ctx context.Context, c reload.Collector) {
	var err error
	select {
	case q.sem <- struct{}{}:
		if err = q.j.checkLeader(ctx); err == nil { // fenced: a copy that does not lead reloads nothing
			err = q.pool.Reload(ctx, []reload.Collector{c})[0].Err
		}
		<-q.sem
	case <-ctx.Done():
		err = ctx.Err()
	}
	q.mu.Lock()
	delete(q.inflight, c.ID)
	switch {
	case ctx.Err() != nil:
	case errors.Is(err, ErrNotLeader): // the leader reloads what it writes
		delete(q.fails, c.ID)
		delete(q.due, c.ID)
		q.j.s.opts.Logger.Info("not the leader: reload left to the leader", "job", q.j.cfg.Name, "collector", c.ID)
	case err == nil:
		delete(q.fails, c.ID)
		delete(q.due, c.ID)
		if !q.j.isMember(c.ID) {
			q.pool.Forget(c.ID) // its last reload: no series left behind
		}
	default:
		q.failed(c)
	}
	q.mu.Unlock()
	q.poke()
}
