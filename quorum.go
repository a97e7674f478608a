package promshard

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Quorum holds back a job's first write, at a cold start, until enough
// collectors are healthy: without it the first reshard shards everything
// to whichever collectors passed their checks first. Once the job has
// written, failover is never held back.
type Quorum struct {
	// MinMembers is how many healthy collectors the first write waits for;
	// zero (the default) waits for none.
	MinMembers int
	// Wait bounds the wait; zero waits as long as it takes. After Wait the
	// job writes with the collectors it has (with a warning), unless
	// Refuse is set: then it keeps waiting, and keeps saying why.
	Wait   time.Duration
	Refuse bool
}

func (q Quorum) validate() error {
	if q.MinMembers < 0 || q.Wait < 0 {
		return fmt.Errorf("Job.Quorum: MinMembers %d, Wait %v: must not be negative", q.MinMembers, q.Wait)
	}
	return nil
}

// quorum is a job's cold-start hold: since when it waits, and whether the
// wait is over.
type quorum struct {
	cfg Quorum
	job string
	log *slog.Logger

	mu      sync.Mutex
	since   time.Time // the job started; zero before
	reached bool      // the first write was let through
}

// start marks the job's start.
func (q *quorum) start(now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.since.IsZero() {
		q.since = now
	}
}

// hold returns an error while the job's first write must wait for members
// healthy collectors; nil once it may write (and ever after).
func (q *quorum) hold(members int, now time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.reached || members >= q.cfg.MinMembers {
		q.reached = true
		return nil
	}
	if q.since.IsZero() {
		q.since = now
	}
	waited := now.Sub(q.since)
	if q.cfg.Wait > 0 && waited >= q.cfg.Wait && !q.cfg.Refuse {
		q.reached = true
		q.log.Warn("quorum: the wait is over; writing with fewer collectors than Quorum.MinMembers", "job", q.job,
			"collectors", members, "min_members", q.cfg.MinMembers, "waited", waited.Round(time.Second))
		return nil
	}
	return fmt.Errorf("job %q: waiting for quorum: %d of %d collectors healthy (for %v): nothing written yet",
		q.job, members, q.cfg.MinMembers, waited.Round(time.Second))
}
