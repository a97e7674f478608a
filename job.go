package promshard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// Report is what one reshard of a job did.
type Report struct {
	// Job is the job's name; Reason what triggered the reshard ("members",
	// "targets", "timer", "once", "request", or several of them).
	Job, Reason string
	// Start is when the reshard began; Took how long it ran (reloads
	// included only for [Sharder.Reshard] and [Sharder.Once]).
	Start time.Time
	Took  time.Duration
	// Members is the number of members in the ring; Excluded the members
	// left out because an output cannot serve their ID.
	Members  int
	Excluded []string
	// Targets is the number of targets placed; Replicas the replication
	// achieved (fewer than asked when there are fewer members).
	Targets, Replicas int
	// StaleTargets is set when the provider failed and its last good
	// targets were used; TargetsErr is its error.
	StaleTargets bool
	TargetsErr   error
	// Diff is what changed against the last assignment written.
	Diff shard.Diff
	// Changed lists the members whose output changed.
	Changed []string
	// Skipped is set when the loop found the members and the targets as
	// at the last successful reshard and left the outputs alone;
	// Assignment is then that reshard's.
	Skipped bool
	// Standby is set when this copy does not lead (Options.Elector): it
	// computed the assignment and wrote nothing.
	Standby bool
	// Draining lists the collectors drained on purpose (Consul maintenance,
	// Job.DrainTag) and Leaving those that failed their check, both still
	// registered: they are out of the ring and get an empty list, not a
	// removed file, so that one that still runs scrapes nothing.
	Draining, Leaving []string
	// Files maps each member whose file an output wrote (only Self in self
	// mode; none in a dry run) to that file.
	Files map[string]string
	// Reloads are the reload outcomes ([Sharder.Reshard] and
	// [Sharder.Once] only; the loop reloads in the background).
	Reloads reload.Results
	// Assignment is the assignment the outputs accepted in this reshard;
	// nil when it failed.
	Assignment *shard.Assignment
	// Err is the reshard's error (nil when the outputs hold the new
	// assignment).
	Err error
}

// WriteTable prints the report for a person: the job, its counts, one
// line per member with its targets and file, and the reloads that failed.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	asg := r.Assignment
	if asg == nil {
		fmt.Fprintf(tw, "job %s: no assignment (%v)\n", r.Job, r.Err)
		return tw.Flush()
	}
	fmt.Fprintf(tw, "job %s: %d targets on %d collectors (ring %s, replicas %d)\n  COLLECTOR\tTARGETS\tFILE\n",
		r.Job, asg.Targets, len(asg.Members), asg.Ring, asg.Replicas)
	for _, m := range asg.Members {
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", m.ID, asg.Count(m.ID), cmp.Or(r.Files[m.ID], "-"))
	}
	if failed := r.Reloads.Failed(); len(failed) > 0 {
		fmt.Fprintf(tw, "  reload failed for %v\n", failed)
	}
	return tw.Flush()
}

// Snapshot is a job's state for status pages and HTTP handlers.
type Snapshot struct {
	// Job is the job's name; Self its self-mode member ("" in central mode).
	Job, Self string
	// Assignment is the last assignment the outputs accepted, Ring the ring
	// that made it and Members the members it was made for (with their
	// addresses); nil before the first success.
	Assignment *shard.Assignment
	Ring       shard.Ring
	Members    []watch.Member
	// KeyLabel is the label that places targets ("" for __address__).
	KeyLabel string
	// Generation counts the reshards that changed the assignment or an
	// output (the first included); it is what audit.Job.Generation is
	// given.
	Generation uint64
	// LastSuccess is when the outputs last accepted an assignment.
	LastSuccess time.Time
	// Audit is the last audit's report (with Options.Audit), nil before.
	Audit *audit.Report
	// Groups is what the outputs hold: the assignment's groups, plus the
	// targets that old owners keep while hand-offs are pending.
	Groups map[string][]*targetgroup.Group
	// Handoffs is the number of targets with a pending hand-off.
	Handoffs int
	// Leavers are the collectors out of the ring that are still registered,
	// each with its State (maintenance when drained): they get an empty
	// list.
	Leavers []watch.Member
	// Role is RoleLeader or RoleStandby for a job under Options.Elector,
	// "" otherwise; Leader names the current leader. On a standby,
	// Assignment is what this copy computed, ready for a takeover; the
	// outputs hold the leader's.
	Role, Leader string
	// Epoch is the job's last published epoch that this copy knows: the one
	// it published as leader, or read as a standby or in self mode; Agrees
	// says whether it is the plan of this copy's Assignment.
	Epoch  watch.Epoch
	Agrees bool
	// Last is the report of the last reshard, failed or not.
	Last Report
	// Recent are the last reshards, newest first (at most 10), without
	// their assignments, files and reloads.
	Recent []Report
	// PendingReloads lists members whose reload has not succeeded yet.
	PendingReloads []string
}

// Ready reports whether the job has an assignment in its outputs and its
// last reshard succeeded.
func (s Snapshot) Ready() bool { return s.Assignment != nil && s.Last.Err == nil }

// Snapshot returns a job's state. The assignment and ring are shared:
// treat them as read-only.
func (s *Sharder) Snapshot(job string) (Snapshot, error) {
	j, err := s.job(job)
	if err != nil {
		return Snapshot{}, err
	}
	j.stateMu.RLock()
	snap := j.snap
	j.stateMu.RUnlock()
	snap.PendingReloads = j.reloads.pending()
	if snap.Role = j.role(); snap.Role != "" {
		snap.Leader = s.opts.Elector.Leader()
	}
	return snap, nil
}

// job is the running state of one Job.
type job struct {
	s       *Sharder
	cfg     Job
	m       *metrics
	reloads *reloadQueue
	trigger chan struct{} // size 1: coalesces pokes

	mu          sync.Mutex
	members     []watch.Member
	sick        []watch.Member // registered, not healthy (watch.Roster)
	haveMembers bool
	haveCh      chan struct{} // closed at the first member set
	reasons     map[string]bool
	excluded    map[string]bool // members left out, to log each only once
	departed    map[string]departed
	disagree    map[string]time.Time // collectors the audit found wrong, since when
	auditKick   chan struct{}        // size 1: an audit after a reshard

	hmu         sync.Mutex // the hand-off state below
	pending     map[string]*handoff
	written     map[string][]*targetgroup.Group // what the outputs hold
	lastMembers string                          // memberKey of the last reshard

	passMu   sync.Mutex // one reshard at a time
	lastKey  uint64     // inputKey of the last successful reshard; under passMu
	asgKey   uint64     // inputKey of snap.Assignment; under passMu
	pubKey   uint64     // inputKey of the epoch this copy last published, in term pubTerm; under passMu
	pubTerm  uint64
	draining map[string]bool // collectors draining at the last reshard; under passMu

	costReader CostReader // with Balance.By series
	costMu     sync.Mutex
	costs      *costTable        // in use; nil while placing by count
	costSum    string            // checksum of the published table in costs, as read
	next       map[uint64]uint64 // costs the balance tick chose, for the next reshard
	partial    bool              // costs holds only part of the last next: the tick goes on at once
	overSince  time.Time         // since when a collector is above its bound; balance tick only
	costTerm   uint64            // the leadership term whose table was read; balance tick only
	badCap     map[string]bool   // collector and max_series meta that is not a number, logged
	stateMu    sync.RWMutex
	snap       Snapshot
}

func (s *Sharder) newJob(jc Job) (*job, error) {
	if jc.Name == "" {
		return nil, errors.New("Job.Name is empty")
	}
	if _, dup := s.byName[jc.Name]; dup {
		return nil, fmt.Errorf("Job.Name %q used twice", jc.Name)
	}
	if jc.Ring != "" {
		if _, err := shard.ParseKind(string(jc.Ring)); err != nil {
			return nil, fmt.Errorf("Job.Ring: %w", err)
		}
	}
	if err := jc.Shard.Validate(); err != nil {
		return nil, fmt.Errorf("Job.Shard: %w", err)
	}
	if len(jc.Outputs) == 0 && !s.opts.DryRun {
		return nil, errors.New("Job.Outputs: none")
	}
	if slices.Contains(jc.Outputs, nil) {
		return nil, errors.New("Job.Outputs: a nil output")
	}
	for _, m := range jc.Known {
		for _, o := range jc.Outputs {
			if c, ok := o.(MemberChecker); ok {
				if err := c.CheckMember(m.ID); err != nil {
					return nil, fmt.Errorf("Job.Known collector %q: %w", m.ID, err)
				}
			}
		}
	}
	if jc.Self != "" && len(jc.Known) > 0 && !slices.ContainsFunc(jc.Known, func(m watch.Member) bool { return m.ID == jc.Self }) {
		return nil, fmt.Errorf("Job.Self %q is none of the known collectors", jc.Self)
	}
	if err := jc.Balance.validate(); err != nil {
		return nil, err
	}
	if jc.ReloadConcurrency < 0 {
		return nil, fmt.Errorf("Job.ReloadConcurrency %d: must not be negative", jc.ReloadConcurrency)
	}
	if jc.Self != "" { // self mode writes one file: a directory output is narrowed to it
		jc.Outputs = slices.Clone(jc.Outputs)
		for i, o := range jc.Outputs {
			if d, ok := o.(*filesd.Dir); ok {
				mf, err := d.File(jc.Self)
				if err != nil {
					return nil, fmt.Errorf("Job.Self %q: %w", jc.Self, err)
				}
				jc.Outputs[i] = mf
			}
		}
	}
	if jc.Targets != nil {
		if err := s.reg.Register(jc.Name, jc.Targets, jc.TargetOptions); err != nil {
			return nil, err
		}
	} else if _, err := s.reg.Provider(jc.Name); err != nil {
		return nil, fmt.Errorf("Job.Targets is nil and Options.Registry has no such job: %w", err)
	}
	if jc.Reloader == nil {
		jc.Reloader = reload.None{}
	}
	reg := s.opts.Registerer
	if reg != nil {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"job": jc.Name}, reg)
	}
	pool, err := reload.NewPool(jc.Reloader, reload.PoolOptions{Concurrency: jc.ReloadConcurrency,
		Logger: s.opts.Logger.With("job", jc.Name), Registerer: reg})
	if err != nil {
		return nil, err
	}
	j := &job{s: s, cfg: jc, m: s.m, trigger: make(chan struct{}, 1), haveCh: make(chan struct{}),
		reasons: map[string]bool{}, excluded: map[string]bool{}, departed: map[string]departed{},
		disagree: map[string]time.Time{}, auditKick: make(chan struct{}, 1), draining: map[string]bool{},
		badCap: map[string]bool{}}
	j.snap = Snapshot{Job: jc.Name, Self: jc.Self, KeyLabel: string(jc.Shard.KeyLabel)}
	j.reloads = newReloadQueue(j, pool)
	if j.balancing() {
		if j.costReader = jc.Balance.Costs; j.costReader == nil {
			if j.costReader, err = s.seriesReader(); err != nil {
				return nil, err
			}
		}
	}
	return j, nil
}

// setMembers takes a member set and, from a [watch.Roster], the collectors
// that are registered but not healthy (nil when the source has no roster).
func (j *job) setMembers(ms, sick []watch.Member) {
	j.mu.Lock()
	j.members, j.sick = ms, sick
	if !j.haveMembers {
		j.haveMembers = true
		close(j.haveCh)
	}
	j.mu.Unlock()
	j.poke("members")
}

// poke asks the loop for a reshard; pokes while one runs become one more.
func (j *job) poke(reason string) {
	j.mu.Lock()
	j.reasons[reason] = true
	j.mu.Unlock()
	select {
	case j.trigger <- struct{}{}:
	default:
	}
}

func (j *job) takeReasons() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	rs := slices.Sorted(maps.Keys(j.reasons))
	clear(j.reasons)
	switch len(rs) {
	case 0:
		return "timer"
	case 1:
		return rs[0]
	}
	return fmt.Sprint(rs)
}

// loop reshards on every poke and on the refresh timer until ctx is done.
// Nothing happens before the first member set.
func (j *job) loop(ctx context.Context) {
	t := time.NewTicker(j.s.opts.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.trigger:
		case <-t.C:
		}
		select {
		case <-j.haveCh:
		default:
			continue
		}
		_, _ = j.reshard(ctx, j.takeReasons(), false)
	}
}

// reshard is one pass: targets, ring, assignment, outputs, reloads. With
// wait it reloads the changed collectors itself and waits; otherwise the
// job's reload queue does it in the background, so that a slow collector
// never delays the next reshard.
func (j *job) reshard(ctx context.Context, reason string, wait bool) (rep Report, err error) {
	j.passMu.Lock()
	defer j.passMu.Unlock()
	name, log := j.cfg.Name, j.s.opts.Logger
	rep = Report{Job: name, Reason: reason, Start: time.Now()}
	defer func() {
		rep.Took, rep.Err = time.Since(rep.Start), err
		j.m.observe(name, rep)
		slim := rep
		slim.Assignment, slim.Files, slim.Reloads, slim.Diff.Members = nil, nil, nil, nil
		j.stateMu.Lock()
		j.snap.Last = rep
		j.snap.Recent = append([]Report{slim}, j.snap.Recent[:min(len(j.snap.Recent), recentReshards-1)]...)
		j.stateMu.Unlock()
		if err != nil && ctx.Err() == nil {
			log.Error("reshard failed; outputs stay as they are", "job", name, "reason", reason, "err", err)
		}
		if f := j.s.opts.OnReshard; f != nil {
			f(rep)
		}
	}()
	j.mu.Lock()
	members, sick := j.members, j.sick
	j.mu.Unlock()

	res, terr := j.s.reg.Targets(ctx, name)
	if terr != nil {
		if res.Fetched.IsZero() {
			return rep, fmt.Errorf("job %q: no good targets yet: %w", name, terr)
		}
		rep.StaleTargets, rep.TargetsErr = true, terr
		log.Warn("target provider failed; using its last good targets", "job", name,
			"age", res.Age(time.Now()).Round(time.Second), "err", terr)
	}
	members, drained := j.splitDrains(members)
	members, rep.Excluded = j.checkMembers(members)
	leavers := j.leavers(sick, drained)
	for _, m := range leavers {
		if m.State == watch.StateMaintenance {
			rep.Draining = append(rep.Draining, m.ID)
		} else {
			rep.Leaving = append(rep.Leaving, m.ID)
		}
	}
	sms := make([]shard.Member, len(members))
	for i, m := range members {
		sms[i] = shard.Member{ID: m.ID, Weight: m.Weight}
		if j.cfg.SpreadBy != "" {
			sms[i].Domain = m.Label(j.cfg.SpreadBy)
		}
	}
	if len(sms) == 0 {
		return rep, fmt.Errorf("job %q: no healthy collectors: %w", name, ErrNoMembers)
	}
	if j.balancing() {
		if err := j.adopt(ctx, sms, members, res.Groups); err != nil {
			return rep, fmt.Errorf("job %q: balance: %w", name, err)
		}
	}
	opts, costKey := j.cfg.Shard, uint64(0)
	if tab := j.table(); tab != nil {
		opts, costKey = j.placement(members, tab.placed), tab.key
	}
	key := j.inputKey(res.Fingerprint^costKey, members, leavers)
	if !wait && j.unchanged(key, reason) {
		j.stateMu.RLock()
		asg := j.snap.Assignment
		j.stateMu.RUnlock()
		rep.Skipped, rep.Assignment = true, asg
		rep.Members, rep.Targets, rep.Replicas = len(asg.Members), asg.Targets, asg.Replicas
		log.Info("reshard skipped: members and targets are as at the last reshard", "job", name, "reason", reason,
			"took", time.Since(rep.Start).Round(time.Microsecond))
		return rep, nil
	}
	j.lastKey = 0 // set again only when this pass succeeds
	j.stateMu.RLock()
	ring, asg := j.snap.Ring, j.snap.Assignment
	j.stateMu.RUnlock()
	if key != j.asgKey || asg == nil { // else the same inputs: the same assignment (a standby's, warm)
		if ring, err = shard.New(j.cfg.Ring, sms); err != nil {
			return rep, fmt.Errorf("job %q: %w", name, err)
		}
		if asg, err = shard.Assign(ring, res.Groups, opts); err != nil {
			return rep, fmt.Errorf("job %q: %w", name, err)
		}
	}
	rep.Members, rep.Targets, rep.Replicas = len(asg.Members), asg.Targets, asg.Replicas
	if j.elected() && !j.s.opts.Elector.Leading() {
		j.standby(ctx, &rep, ring, asg, members, leavers, key)
		return rep, nil
	}

	j.stateMu.RLock()
	prev, prevMembers := j.snap.Assignment, j.snap.Members
	j.stateMu.RUnlock()
	groups, kept := asg.Groups, 0
	if j.s.opts.Handoff { // a drained collector still scrapes: its targets are handed over
		alive := slices.Concat(members, slices.DeleteFunc(slices.Clone(leavers),
			func(m watch.Member) bool { return m.State != watch.StateMaintenance }))
		groups, kept = j.planHandoffs(groups, members, alive, time.Now())
	}
	groups = withEmpty(groups, leavers)
	if j.elected() && !j.s.opts.DryRun {
		if err := j.fence(ctx, key, asg); err != nil {
			return rep, fmt.Errorf("job %q: not written: %w", name, err)
		}
	}
	changed, werr := j.update(ctx, groups)
	rep.Changed = changed
	// What was written is reloaded even when another write failed.
	cs := j.collectors(j.stillThere(changed, members, leavers, sick), members, slices.Concat(prevMembers, leavers))
	if wait {
		rep.Reloads = j.reloads.now(ctx, cs)
	} else {
		j.reloads.add(cs)
	}
	if werr != nil {
		return rep, fmt.Errorf("job %q: output: %w", name, werr)
	}
	rep.Diff, rep.Assignment = shard.Compare(prev, asg), asg
	if !j.s.opts.DryRun {
		rep.Files = map[string]string{}
		for _, m := range asg.Members {
			if f := j.file(m.ID); f != "" && (j.cfg.Self == "" || j.cfg.Self == m.ID) {
				rep.Files[m.ID] = f
			}
		}
	}
	j.hmu.Lock()
	j.written = groups
	handoffs := len(j.pending) // now, for the snapshot
	j.hmu.Unlock()
	if kept == 0 { // outputs that hold kept targets must be written again when the hand-offs end
		j.lastKey = key
	}
	j.asgKey = key
	j.stateMu.Lock()
	j.snap.Assignment, j.snap.Ring, j.snap.Members, j.snap.LastSuccess = asg, ring, members, time.Now()
	j.snap.Groups, j.snap.Handoffs, j.snap.Leavers = groups, handoffs, leavers
	if prev == nil || rep.Diff.Changed() || len(changed) > 0 {
		j.snap.Generation++ // the outputs changed (a hand-off ending changes them alone)
	}
	epoch := j.snap.Epoch.Epoch
	j.stateMu.Unlock()
	j.noteDeparted(members, prevMembers)
	if j.s.opts.Elector != nil && !j.elected() {
		j.readEpoch(ctx, key)
	}
	select {
	case j.auditKick <- struct{}{}:
	default:
	}
	j.m.assigned(name, asg, prev)
	if j.balancing() {
		j.m.unplaced.WithLabelValues(name).Set(float64(len(asg.Unplaced)))
		if len(asg.Unplaced) > 0 {
			log.Warn("balance: targets left unplaced: no collector has room for them within its max_series",
				"job", name, "unplaced", len(asg.Unplaced), "first", asg.Unplaced[:min(5, len(asg.Unplaced))])
		}
	}
	log.Info("reshard", "job", name, "reason", reason, "collectors", rep.Members, "targets", rep.Targets,
		"replicas", rep.Replicas, "added", rep.Diff.Added, "removed", rep.Diff.Removed, "moved", rep.Diff.Moved,
		"draining", rep.Draining, "leaving", rep.Leaving,
		"outputs_changed", len(changed), "reloads", len(cs), "epoch", epoch, "took", time.Since(rep.Start).Round(time.Microsecond))
	if asg.Degraded() {
		log.Warn("fewer collectors than replicas: every collector scrapes everything", "job", name,
			"replicas", asg.RequestedReplicas, "collectors", len(asg.Members))
	}
	return rep, nil
}

// standby ends the pass of a copy that does not lead: it keeps the
// assignment warm for a takeover and writes nothing. What only a leader
// keeps (hand-offs, what the outputs hold) is dropped: a new leader starts
// from its own plan.
func (j *job) standby(ctx context.Context, rep *Report, ring shard.Ring, asg *shard.Assignment,
	members, leavers []watch.Member, key uint64) {
	rep.Standby, rep.Assignment = true, asg
	j.hmu.Lock()
	clear(j.pending)
	j.written = nil
	j.hmu.Unlock()
	j.lastKey, j.asgKey = key, key
	j.stateMu.Lock()
	j.snap.Assignment, j.snap.Ring, j.snap.Members, j.snap.Leavers = asg, ring, members, leavers
	j.snap.Groups, j.snap.Handoffs = asg.Groups, 0
	j.stateMu.Unlock()
	j.readEpoch(ctx, key)
	j.s.opts.Logger.Debug("standby: assignment computed, nothing written", "job", j.cfg.Name, "collectors", rep.Members,
		"targets", rep.Targets, "leader", j.s.opts.Elector.Leader())
}

// isMember reports whether id is in the job's current member set.
func (j *job) isMember(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.ContainsFunc(j.members, func(m watch.Member) bool { return m.ID == id })
}

// checkMembers leaves out members that an output cannot serve, or whose
// weight is above shard.MaxWeight.
func (j *job) checkMembers(ms []watch.Member) (ok []watch.Member, excluded []string) {
	ok = ms[:0:0]
	seen := map[string]bool{}
	for _, m := range ms {
		var bad error
		if m.Weight > shard.MaxWeight {
			bad = fmt.Errorf("weight %d: %w", m.Weight, shard.ErrWeight)
		}
		for _, o := range j.cfg.Outputs {
			if bad != nil {
				break
			}
			if c, is := o.(MemberChecker); is {
				if err := c.CheckMember(m.ID); err != nil {
					bad = err
					break
				}
			}
		}
		if bad == nil {
			ok = append(ok, m)
			continue
		}
		excluded = append(excluded, m.ID)
		seen[m.ID] = true
		j.mu.Lock()
		first := !j.excluded[m.ID]
		j.excluded[m.ID] = true
		j.mu.Unlock()
		if first {
			j.s.opts.Logger.Error("leaving a collector out of the ring",
				"job", j.cfg.Name, "collector", m.ID, "err", bad)
		}
	}
	j.mu.Lock()
	maps.DeleteFunc(j.excluded, func(id string, _ bool) bool { return !seen[id] })
	j.mu.Unlock()
	j.m.excluded.WithLabelValues(j.cfg.Name).Set(float64(len(excluded)))
	return ok, excluded
}

// update hands the assignment to every output (only Self's groups in self
// mode) and returns the members whose output changed.
func (j *job) update(ctx context.Context, groups map[string][]*targetgroup.Group) ([]string, error) {
	if j.s.opts.DryRun {
		return nil, nil
	}
	if self := j.cfg.Self; self != "" {
		gs := groups[self]
		if gs == nil {
			gs = []*targetgroup.Group{}
		}
		groups = map[string][]*targetgroup.Group{self: gs}
	}
	var changed []string
	var errs []error
	for _, o := range j.cfg.Outputs {
		ids, err := o.Update(ctx, groups)
		changed = append(changed, ids...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	slices.Sort(changed)
	return slices.Compact(changed), errors.Join(errs...)
}

// collectors describes the members to reload. A member's address comes from
// the current member set, then the previous one (a member that just left
// still gets its reload), then Job.Known.
func (j *job) collectors(ids []string, now, prev []watch.Member) []reload.Collector {
	out := make([]reload.Collector, 0, len(ids))
	for _, id := range ids {
		addr := ""
		for _, set := range [][]watch.Member{now, prev, j.cfg.Known} {
			if i := slices.IndexFunc(set, func(m watch.Member) bool { return m.ID == id }); i >= 0 {
				addr = set[i].HostPort()
				break
			}
		}
		if addr == "" {
			j.s.opts.Logger.Warn("no address to reload collector", "job", j.cfg.Name, "collector", id)
			continue
		}
		out = append(out, reload.Collector{ID: id, Address: addr, File: j.file(id)})
	}
	return out
}

// filer is an output that knows the file of a member.
type filer interface {
	Path(id string) (string, error)
}

// file is the member's file in the first output that has files, if any.
func (j *job) file(id string) string {
	for _, o := range j.cfg.Outputs {
		if f, ok := o.(filer); ok {
			if p, err := f.Path(id); err == nil {
				return p
			}
		}
		if mf, ok := o.(*filesd.MemberFile); ok && mf.ID == id {
			return mf.Path
		}
	}
	return ""
}

// Explain tells which collectors of a job own the target with this address
// in the last assignment written, and why.
func (s *Sharder) Explain(job, target string) (shard.Explanation, error) {
	snap, err := s.Snapshot(job)
	if err != nil {
		return shard.Explanation{}, err
	}
	if snap.Assignment == nil {
		return shard.Explanation{}, fmt.Errorf("job %q: %w", job, ErrNotStarted)
	}
	return shard.Explain(snap.Ring, snap.Assignment, target, model.LabelName(snap.KeyLabel)), nil
}
