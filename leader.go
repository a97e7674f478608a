package promshard

import (
	"context"
	"fmt"

	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// Elector is the leader election of central mode run as several copies;
// [watch.ConsulLock] is the one promshard has. With Options.Elector, only
// the leader writes the outputs and reloads collectors. The other copies
// (standbys) keep watching members and targets and keep their computed
// assignment warm, so that a copy that becomes leader writes at once.
//
// Jobs in self mode (Job.Self) are not elected: each copy writes its own
// collector's file. They only read the published epoch, to report whether
// they agree with it.
type Elector interface {
	// Run campaigns until ctx ends and sends on changed each time this
	// copy becomes leader or stops being one (see the Run contract in the
	// package doc).
	Run(ctx context.Context, changed chan<- struct{}) error
	// Leading reports this copy's own view, without I/O.
	Leading() bool
	// Leader names the current leader, as last seen.
	Leader() string
	// Check returns nil only if this copy leads right now, asked of the
	// source of truth: the fence before each write and each reload batch.
	Check(ctx context.Context) error
	// Publish records a job's next epoch, atomically with the check that
	// this copy leads, and returns it numbered.
	Publish(ctx context.Context, e watch.Epoch) (watch.Epoch, error)
	// Published reads the last epoch published for a job (zero if none).
	Published(ctx context.Context, job string) (watch.Epoch, error)
}

// ErrNotLeader is what a reshard of a copy that lost the leadership just
// before writing returns: the outputs stay as the leader wrote them.
var ErrNotLeader = watch.ErrNotLeader

// Roles of a job in [Snapshot.Role].
const (
	RoleLeader  = "leader"
	RoleStandby = "standby"
)

// elected reports whether the job's writes depend on the leadership.
func (j *job) elected() bool { return j.s.opts.Elector != nil && j.cfg.Self == "" }

// role is the job's role: "" when it is not elected.
func (j *job) role() string {
	switch {
	case !j.elected():
		return ""
	case j.s.opts.Elector.Leading():
		return RoleLeader
	}
	return RoleStandby
}

// leadershipChanged follows the elector: the metrics, and a reshard of each
// elected job (a new leader writes at once; one that lost the lead drops
// what only a leader keeps).
func (s *Sharder) leadershipChanged() {
	s.term.Add(1)
	leading := s.opts.Elector.Leading()
	s.m.leaderChanges.Inc()
	for _, j := range s.jobs {
		if j.elected() {
			j.m.leader.WithLabelValues(j.cfg.Name).Set(b2f(leading))
			j.poke("leader")
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// planHash names the plan of an input key in published epochs: the same
// inputs give the same assignment on every copy.
func planHash(key uint64) string { return fmt.Sprintf("%016x", key) }

// fence is called by a leader right before it writes: it publishes a new
// epoch when the plan changed since this copy last published in this term,
// and otherwise checks that it still leads. An error means: write nothing.
func (j *job) fence(ctx context.Context, key uint64, asg *shard.Assignment) error {
	el, term := j.s.opts.Elector, j.s.term.Load()
	if key == j.pubKey && term == j.pubTerm {
		return el.Check(ctx)
	}
	ids := make([]string, len(asg.Members))
	for i, m := range asg.Members {
		ids[i] = m.ID
	}
	ep, err := el.Publish(ctx, watch.Epoch{Job: j.cfg.Name, Members: ids, Hash: planHash(key)})
	if err != nil {
		return err
	}
	j.pubKey, j.pubTerm = key, term
	j.setEpoch(ep, true)
	j.s.opts.Logger.Info("published epoch", "job", j.cfg.Name, "epoch", ep.Epoch, "hash", ep.Hash, "collectors", len(ids))
	return nil
}

// readEpoch reads the published epoch, on a copy that does not publish,
// and records whether this copy's plan (key) is that epoch's.
func (j *job) readEpoch(ctx context.Context, key uint64) {
	ep, err := j.s.opts.Elector.Published(ctx, j.cfg.Name)
	if err != nil {
		j.s.opts.Logger.Warn("reading the published epoch failed", "job", j.cfg.Name, "err", err)
		return
	}
	j.setEpoch(ep, ep.Epoch > 0 && ep.Hash == planHash(key))
}

func (j *job) setEpoch(ep watch.Epoch, agrees bool) {
	j.stateMu.Lock()
	j.snap.Epoch, j.snap.Agrees = ep, agrees
	j.stateMu.Unlock()
	j.m.epoch.WithLabelValues(j.cfg.Name).Set(float64(ep.Epoch))
}

// checkLeader fences a reload batch: nil when the job is not elected or
// this copy leads right now.
func (j *job) checkLeader(ctx context.Context) error {
	if !j.elected() {
		return nil
	}
	return j.s.opts.Elector.Check(ctx)
}

// epochHeader is the http_sd response header that carries the epoch of
// the assignment served.
const epochHeader = "Promshard-Epoch"
