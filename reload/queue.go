package reload

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/promshard/promshard/internal/backoff"
)

// ErrGated is what a [QueueOptions].Gate wraps to say that this process
// may not reload.
var ErrGated = errors.New("reload: not allowed to reload here")

// Defaults of [QueueOptions].
const (
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 30 * time.Second
	// DefaultGoneAttempts bounds the attempts to reload a collector whose
	// registration is unknown (it may be dead for good).
	DefaultGoneAttempts = 10
)

// Status is what a [Queue] knows of a collector's life, from its
// QueueOptions.Status.
type Status int

// Statuses of a collector.
const (
	// StatusUnknown: nothing says whether the collector still runs (a
	// member source that keeps no roster).
	StatusUnknown Status = iota
	// StatusMember: a healthy member.
	StatusMember
	// StatusRegistered: registered but not a member (failing its check,
	// drained): it may still run, so what it must stop scraping must
	// reach it.
	StatusRegistered
	// StatusGone: no longer registered: there is nobody to tell.
	StatusGone
)

// String names the status.
func (s Status) String() string {
	switch s {
	case StatusMember:
		return "member"
	case StatusRegistered:
		return "registered"
	case StatusGone:
		return "gone"
	}
	return "unknown"
}

// QueueOptions configures a [Queue]. Zero values get the documented
// defaults.
type QueueOptions struct {
	// BackoffMin and BackoffMax bound the wait before a failed reload is
	// tried again; defaults [DefaultBackoffMin] and [DefaultBackoffMax].
	BackoffMin, BackoffMax time.Duration
	// GoneAttempts bounds the attempts for a collector whose Status is
	// StatusUnknown; default [DefaultGoneAttempts]. One that is registered
	// is retried until it succeeds; one that is gone is given up at once.
	GoneAttempts int
	// Gate, when set, is asked before each reload. An error that wraps
	// [ErrGated] means this process may not reload (a copy that does not
	// lead, in central mode with leader election): the reload is dropped,
	// not retried, as the process that may reloads what it writes. Any
	// other error (the gate could not tell) counts as a failed attempt.
	Gate func(ctx context.Context) error
	// Status tells what is known of a collector; nil means StatusUnknown
	// for every collector.
	Status func(id string) Status
	// Logger receives the reloads given up and dropped; nil discards.
	Logger *slog.Logger
}

// Queue reloads collectors in the background, each until a reload
// succeeds: a failure is retried with backoff, a collector queued again
// while its reload runs is reloaded once more afterwards (bursts
// coalesce), and a hung reload occupies one of the pool's slots without
// delaying any other collector. Reloads run through the [Pool], so its
// Concurrency bounds them. Create it with [NewQueue]; run it with
// [Queue.Run].
type Queue struct {
	pool *Pool
	opts QueueOptions
	none bool // the pool's Reloader is None: nothing to do
	kick chan struct{}

	mu       sync.Mutex
	want     map[string]Collector
	inflight map[string]bool
	fails    map[string]int
	due      map[string]time.Time
	last     map[string]Result // each collector's last outcome
	wg       sync.WaitGroup
}

// NewQueue validates opts. It starts nothing.
func NewQueue(p *Pool, opts QueueOptions) (*Queue, error) {
	if p == nil {
		return nil, errors.New("reload: NewQueue: nil Pool")
	}
	if opts.BackoffMin < 0 || opts.BackoffMax < 0 || opts.GoneAttempts < 0 {
		return nil, fmt.Errorf("reload: QueueOptions BackoffMin %v, BackoffMax %v, GoneAttempts %d: must not be negative",
			opts.BackoffMin, opts.BackoffMax, opts.GoneAttempts)
	}
	opts.BackoffMin = cmp.Or(opts.BackoffMin, DefaultBackoffMin)
	opts.BackoffMax = cmp.Or(opts.BackoffMax, DefaultBackoffMax)
	if opts.BackoffMax < opts.BackoffMin {
		return nil, fmt.Errorf("reload: QueueOptions.BackoffMax %v: less than BackoffMin %v", opts.BackoffMax, opts.BackoffMin)
	}
	opts.GoneAttempts = cmp.Or(opts.GoneAttempts, DefaultGoneAttempts)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Status == nil {
		opts.Status = func(string) Status { return StatusUnknown }
	}
	_, none := p.r.(None)
	return &Queue{pool: p, opts: opts, none: none, kick: make(chan struct{}, 1), want: map[string]Collector{},
		inflight: map[string]bool{}, fails: map[string]int{}, due: map[string]time.Time{}, last: map[string]Result{}}, nil
}

// Add queues collectors for a reload; [Queue.Run] reloads them.
func (q *Queue) Add(cs ...Collector) {
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

func (q *Queue) poke() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Now reloads collectors at once and waits for them; the failures stay
// queued for [Queue.Run] (when it runs).
func (q *Queue) Now(ctx context.Context, cs []Collector) Results {
	if q.none || len(cs) == 0 {
		return nil
	}
	if err := q.gate(ctx); err != nil {
		res := make(Results, len(cs))
		for i, c := range cs {
			res[i] = Result{Collector: c, Err: fmt.Errorf("not reloaded: %w", err), At: time.Now()}
		}
		return res
	}
	res := q.pool.Reload(ctx, cs)
	q.mu.Lock()
	for _, r := range res {
		if r.Err == nil {
			delete(q.fails, r.Collector.ID)
			delete(q.due, r.Collector.ID)
			continue
		}
		q.failed(r.Collector)
	}
	q.mu.Unlock()
	return res
}

func (q *Queue) gate(ctx context.Context) error {
	if q.opts.Gate == nil {
		return nil
	}
	return q.opts.Gate(ctx)
}

// failed records a failed reload; q.mu is held. A collector that is still
// registered may still run: it is tried until it succeeds (what it must
// stop scraping must reach it). One that is gone, or unknown after
// GoneAttempts, is given up.
func (q *Queue) failed(c Collector) {
	q.fails[c.ID]++
	n := q.fails[c.ID]
	if st := q.opts.Status(c.ID); st == StatusGone || (st == StatusUnknown && n >= q.opts.GoneAttempts) {
		q.opts.Logger.Warn("giving up reloading a collector that is gone", "collector", c.ID, "attempts", n)
		delete(q.fails, c.ID)
		delete(q.due, c.ID)
		q.pool.Forget(c.ID)
		return
	}
	if _, newer := q.want[c.ID]; !newer {
		q.want[c.ID] = c
	}
	q.due[c.ID] = time.Now().Add(backoff.Delay(q.opts.BackoffMin, q.opts.BackoffMax, n))
}

// Last returns each collector's last reload outcome (a copy).
func (q *Queue) Last() map[string]Result {
	q.mu.Lock()
	defer q.mu.Unlock()
	return maps.Clone(q.last)
}

// Pending lists the collectors whose reload has not succeeded yet, sorted.
func (q *Queue) Pending() []string {
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

// Run reloads queued collectors until ctx is done, then waits for the
// reloads it started, and returns nil.
func (q *Queue) Run(ctx context.Context) error {
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
			return nil
		case <-q.kick:
		case <-timer.C:
		}
	}
}

func (q *Queue) reload(ctx context.Context, c Collector) {
	gateErr := q.gate(ctx)
	var err error
	if gateErr == nil {
		res := q.pool.Reload(ctx, []Collector{c})[0]
		err = res.Err
		q.mu.Lock()
		q.last[c.ID] = res
		q.mu.Unlock()
	}
	q.mu.Lock()
	delete(q.inflight, c.ID)
	switch {
	case ctx.Err() != nil:
	case errors.Is(gateErr, ErrGated): // the process that may reload does it
		delete(q.fails, c.ID)
		delete(q.due, c.ID)
		q.opts.Logger.Info("reload not allowed here: left to the process that writes", "collector", c.ID, "err", gateErr)
	case gateErr != nil:
		q.failed(c)
	case err == nil:
		delete(q.fails, c.ID)
		delete(q.due, c.ID)
		if q.opts.Status(c.ID) != StatusMember {
			q.pool.Forget(c.ID) // its last reload: no series left behind
		}
	default:
		q.failed(c)
	}
	q.mu.Unlock()
	q.poke()
}
