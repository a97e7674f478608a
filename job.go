package promshard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/elect"
	"github.com/promshard/promshard/internal/tick"
	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/watch"
)

// recentReshards is how many reports a job keeps in Snapshot.Recent.
const recentReshards = 10

// heaviestN is how many of each collector's heaviest targets a snapshot
// lists.
const heaviestN = 10

// Job is one scrape pool to shard: its targets, how they are placed, where
// the result goes and how collectors learn of it.
type Job struct {
	// Name of the job; unique in a Sharder. Required.
	Name string
	// Targets provides the job's targets. Nil means the provider registered
	// under Name in Options.Registry.
	Targets targets.Provider
	// TargetOptions guard the provider's answers: by default an empty answer
	// is taken for a failure of the source (the last good targets stay, and
	// before any good answer nothing is written), and a sudden drop of more
	// than half the targets is read again to confirm it. Used when Targets
	// is set; a job from Options.Registry has its own.
	TargetOptions targets.JobOptions
	// Ring is the ring kind; empty means [shard.DefaultKind].
	Ring shard.Kind
	// Shard are the placement options (replicas, key label).
	Shard shard.Options
	// SpreadBy, when set, is the metadata key that names a collector's
	// failure domain (a zone, a rack): its Consul service meta, else its
	// node meta (see [watch.Member.Label]), or meta of a static member. The
	// replicas of a target then never share a domain while another domain
	// can take one. Collectors without the key form the domain "".
	SpreadBy string
	// DrainTag, when set, drains a healthy collector that carries this
	// Consul tag, like one in Consul maintenance (consul maint): it leaves
	// the ring as a planned move (with Options.Handoff, its targets go to
	// their new owners first and leave it only once those scrape them),
	// then it gets an empty list.
	DrainTag string
	// Balance is how the job balances its collectors: by target count (the
	// default) or by measured series, with caps (see [Balance]).
	Balance Balance
	// ScrapePool is the collectors' scrape job (job_name) that reads this
	// job's targets, for the audit; empty means Name.
	ScrapePool string
	// Outputs receive the assignment. At least one is required, unless the
	// Sharder runs with DryRun.
	Outputs []Output
	// Reloader tells a collector its output changed; nil means
	// reload.None (file_sd and http_sd notice changes by themselves).
	Reloader reload.Reloader
	// ReloadConcurrency bounds the reloads of this job running at once;
	// zero means reload.DefaultConcurrency.
	ReloadConcurrency int
	// Self, when set, is self mode: the Sharder runs beside the collector
	// with this member ID and every output receives only that member's
	// groups (an empty list while it is not a healthy member, so that its
	// old targets are not scraped twice). Use a [filesd.MemberFile] as
	// output.
	//
	// [filesd.MemberFile]: https://pkg.go.dev/github.com/promshard/promshard/filesd#MemberFile
	Self string
	// SelfNode, in self mode, is the node of the Self collector's instance
	// (the local Consul agent's node): when one service ID is registered on
	// several nodes with different addresses, the watcher names each
	// instance ID@node, and Self is the one on SelfNode. A Self that matches
	// no member and no registered collector fails the reshard (the output
	// still gets an empty list), so that the operator sees it.
	SelfNode string
	// Members is the job's member source; nil means the source given to
	// [Sharder.Run] or [Sharder.Once]. Jobs that name the same source share
	// one watch of it.
	Members watch.Source
	// Known are collectors known beyond the member set (from a config):
	// their addresses are used to reload a collector that is not a healthy
	// member, such as the Self collector while its check fails.
	Known []watch.Member
	// Quorum holds back the first write until enough collectors are
	// healthy.
	Quorum Quorum
	// Guard holds the assignment when too many collectors leave at once
	// (a partition, a fault of the checks): on by default.
	Guard PartitionGuard
	// Relabel, when set, is applied to each target (its group's labels,
	// then its own) before it is placed, in Prometheus' semantics, as the
	// collectors' scrape job applies it: a target it drops is neither
	// placed nor counted, and a target is placed by its __address__ (or
	// Shard.KeyLabel) as the rules leave it, so that targets that become
	// one share their collectors. The outputs get the original labels: the
	// collector relabels them itself, so nothing is applied twice. Each
	// target is relabelled once, when its group first appears.
	Relabel []*relabel.Config
	// PreferZoneLabel names a target label (read after Relabel) whose value
	// is a collector's zone, the value of its SpreadBy key: the target's
	// first replica goes to the best-ranked collector of that zone when
	// one is in the ring (and, balanced by series, has room), otherwise the
	// ring decides; other replicas go to other zones. Needs SpreadBy.
	PreferZoneLabel string
	// PinFallback is where a target pinned to a collector ([LabelPin])
	// goes while that collector is not in the ring: PinFallbackRing (the
	// default: the ring places it as any other) or PinFallbackNone
	// (nowhere: it is reported as unplaced).
	PinFallback string
}

// The values of [Job.PinFallback].
const (
	PinFallbackRing = "ring"
	PinFallbackNone = "none"
)

// validate checks the job's own fields.
func (jc Job) validate(dryRun bool) error {
	switch {
	case jc.Name == "":
		return errors.New("Job.Name is empty")
	case len(jc.Outputs) == 0 && !dryRun:
		return errors.New("Job.Outputs: none")
	case slices.Contains(jc.Outputs, nil):
		return errors.New("Job.Outputs: a nil output")
	case jc.ReloadConcurrency < 0:
		return fmt.Errorf("Job.ReloadConcurrency %d: must not be negative", jc.ReloadConcurrency)
	}
	if jc.Ring != "" {
		if _, err := shard.ParseKind(string(jc.Ring)); err != nil {
			return fmt.Errorf("Job.Ring: %w", err)
		}
	}
	if err := jc.Shard.Validate(); err != nil {
		return fmt.Errorf("Job.Shard: %w", err)
	}
	if jc.Self != "" && len(jc.Known) > 0 && !slices.ContainsFunc(jc.Known, func(m watch.Member) bool { return m.ID == jc.Self }) {
		return fmt.Errorf("Job.Self %q is none of the known collectors", jc.Self)
	}
	if err := jc.Quorum.validate(); err != nil {
		return err
	}
	if err := jc.Guard.validate(); err != nil {
		return err
	}
	if err := jc.validatePlacement(); err != nil {
		return err
	}
	return jc.Balance.validate()
}

// job is the running state of one Job: its loop, and the features it
// composes, each with its own state.
type job struct {
	s       *Sharder
	cfg     Job
	outs    outputs
	fp      fingerprint
	roster  *roster
	reloads *reload.Queue
	hand    *handoffs      // nil without Options.Handoff
	rules   *placer        // relabelling, zone preference and overrides
	bal     *balancer      // nil unless balanced by series
	audits  *auditSchedule // nil without Options.Audit
	epochs  *epochs        // nil without Options.Elector
	quorum  *quorum        // nil without Job.Quorum.MinMembers
	guard   *guard         // nil with Job.Guard.Share 1
	events  history
	trigger chan struct{} // size 1: coalesces pokes
	fetchCh chan struct{} // size 1: a provider reported news
	// firstFetch is closed once the provider was first read: the loop's
	// first reshard waits for it.
	firstFetch chan struct{}

	fetchMu  sync.Mutex
	fetchErr error  // of the last fetch; nil when it succeeded
	fetched  bool   // a fetch ended
	lastFP   uint64 // fingerprint of the last good fetch

	pokeMu  sync.Mutex
	reasons Reason

	// The pass's own state: one reshard at a time.
	passMu  sync.Mutex
	written map[string][]*tstore.Group // what the outputs hold
	// writtenOf is the assignment whose groups, exactly, the outputs hold
	// (no kept hand-off, no failed write); nil when unknown.
	writtenOf *shard.Assignment
	lastKey   uint64          // inputs of the last pass that left the outputs as planned
	lastHand  uint64          // the hand-offs' version at that pass (handoffs.version)
	asgKey    uint64          // inputs of the assignment in the snapshot
	draining  map[string]bool // collectors draining at the last reshard
	selfID    string          // self mode: the Self collector's member ID (Self, or Self@SelfNode)
	excluded  map[string]bool // collectors excluded at the last reshard, to log each once

	stateMu sync.RWMutex
	snap    Snapshot
}

func (s *Sharder) newJob(jc Job) (*job, error) {
	if err := jc.validate(s.opts.DryRun); err != nil {
		return nil, err
	}
	if _, dup := s.byName[jc.Name]; dup {
		return nil, fmt.Errorf("Job.Name %q used twice", jc.Name)
	}
	outs := newOutputs(jc.Outputs)
	for _, m := range jc.Known {
		if m.ID == "" {
			continue // a static collector's ID defaults to address:port
		}
		if err := outs.check(m.ID); err != nil {
			return nil, fmt.Errorf("Job.Known collector %q: %w", m.ID, err)
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
	log := s.opts.Logger
	reg := s.opts.Registerer
	if reg != nil {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"shard_job": jc.Name}, reg)
	}
	pool, err := reload.NewPool(jc.Reloader, reload.PoolOptions{Concurrency: jc.ReloadConcurrency,
		Logger: log.With("job", jc.Name), Registerer: reg})
	if err != nil {
		return nil, err
	}
	j := &job{s: s, cfg: jc, outs: outs, roster: newRoster(), trigger: make(chan struct{}, 1),
		fetchCh: make(chan struct{}, 1), firstFetch: make(chan struct{}), draining: map[string]bool{}, excluded: map[string]bool{},
		fp: fingerprint{spreadBy: jc.SpreadBy, caps: jc.Balance.By == BalanceBySeries}, rules: newPlacer(jc)}
	j.snap = Snapshot{Job: jc.Name, Self: jc.Self, KeyLabel: string(jc.Shard.KeyLabel)}
	qo := s.opts.Reload
	qo.Logger, qo.Status = log.With("job", jc.Name), j.roster.status
	qo.Gate = func(ctx context.Context) error {
		if !j.elected() {
			return nil
		}
		err := s.opts.Elector.Check(ctx)
		if errors.Is(err, elect.ErrNotLeader) {
			return fmt.Errorf("%w: %w", reload.ErrGated, err)
		}
		return err
	}
	if j.reloads, err = reload.NewQueue(pool, qo); err != nil {
		return nil, fmt.Errorf("Options.Reload: %w", err)
	}
	pool0 := jc.ScrapePool
	if pool0 == "" {
		pool0 = jc.Name
	}
	if s.opts.Handoff.Enabled {
		j.hand = newHandoffs(jc.Name, jc.Self, s.opts.Handoff.Timeout, s.m, log)
	}
	if s.audit != nil {
		j.audits = &auditSchedule{job: jc.Name, pool: pool0, auditor: s.audit, repairAfter: s.opts.Audit.RepairAfter,
			m: s.m, log: log, kick: make(chan struct{}, 1), disagree: map[string]time.Time{}}
	}
	if jc.Guard.Share < 1 {
		j.guard = &guard{cfg: jc.Guard.withDefaults(), job: jc.Name, m: s.m, log: log, poke: func() { j.poke(reasonMembers) },
			kick: make(chan struct{}, 1)}
	}
	if jc.Quorum.MinMembers > 0 {
		j.quorum = &quorum{cfg: jc.Quorum, job: jc.Name, log: log}
	}
	if s.opts.Elector != nil {
		j.epochs = &epochs{job: jc.Name, el: s.opts.Elector, m: s.m, log: log}
	}
	if jc.Balance.By == BalanceBySeries {
		j.bal = &balancer{job: jc.Name, pool: pool0, cfg: jc.Balance, ring: jc.Ring, opts: jc.Shard, reader: jc.Balance.Costs,
			store: s.opts.Store, m: s.m, log: log, badCap: map[string]bool{}}
		if j.bal.reader == nil {
			if j.bal.reader, err = s.collectorReader(); err != nil {
				return nil, err
			}
		}
	}
	return j, nil
}

// run starts the job's goroutines with start.
func (j *job) run(ctx context.Context, start func(func() error)) {
	if j.quorum != nil {
		j.quorum.start(time.Now())
	}
	start(func() error { j.loop(ctx); return nil })
	start(func() error { j.refresh(ctx); return nil })
	start(func() error { return j.reloads.Run(ctx) })
	if a := j.audits; a != nil {
		start(func() error {
			tick.Every(ctx, j.s.opts.Audit.Interval, a.kick, func() bool { j.audit(ctx); return true })
			return nil
		})
	}
	if g := j.guard; g != nil && g.cfg.Probe != nil {
		start(func() error { g.probeLoop(ctx); return nil })
	}
	if j.hand != nil {
		start(func() error {
			tick.Every[struct{}](ctx, handoffPoll, nil, func() bool { j.confirmHandoffs(ctx); return true })
			return nil
		})
	}
	if b := j.bal; b != nil {
		start(func() error {
			if j.cfg.Self != "" && b.store == nil {
				j.s.opts.Logger.Warn("balance: self mode without a published cost table (no Options.Store): "+
					"balancing by count", "job", j.cfg.Name)
				return nil
			}
			j.balanceTick(ctx)
			tick.Every[struct{}](ctx, cmp.Or(j.cfg.Balance.Interval, defaultBalanceInterval), nil,
				func() bool { j.balanceTick(ctx); return true })
			return nil
		})
	}
}

// setMembers takes a member set and, from a [watch.Roster], the collectors
// that are registered but not healthy (nil when the source has no roster).
func (j *job) setMembers(ms, sick []watch.Member) {
	j.roster.set(ms, sick)
	j.poke(reasonMembers)
}

// poke asks the loop for a reshard; pokes while one runs become one more.
func (j *job) poke(r Reason) {
	j.pokeMu.Lock()
	j.reasons |= r
	j.pokeMu.Unlock()
	select {
	case j.trigger <- struct{}{}:
	default:
	}
}

func (j *job) takeReasons() Reason {
	j.pokeMu.Lock()
	defer j.pokeMu.Unlock()
	r := j.reasons
	j.reasons = 0
	if r == 0 {
		r = reasonTimer
	}
	return r
}

// fetchSoon asks the refresher to read the provider.
func (j *job) fetchSoon() {
	select {
	case j.fetchCh <- struct{}{}:
	default:
	}
}

// refresh reads the job's provider in the background: when it reports
// news, and every RefreshInterval, after which it asks for the timer pass
// (which also checks the outputs). Targets that differ from those in hand
// ask for a reshard; a reshard never waits for a provider.
func (j *job) refresh(ctx context.Context) {
	j.fetch(ctx)
	close(j.firstFetch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-j.fetchCh:
				if r := j.fetch(ctx); r != 0 {
					j.poke(r)
				}
			}
		}
	}()
	tick.Every[struct{}](ctx, j.s.opts.RefreshInterval, nil, func() bool {
		j.poke(j.fetch(ctx) | reasonTimer)
		return true
	})
	<-done
}

// fetch reads the provider once. It returns reasonTargets when the targets
// differ from the last good ones (the first read excepted: the loop's
// first pass reads it).
func (j *job) fetch(ctx context.Context) Reason {
	res, err := j.s.reg.Targets(ctx, j.cfg.Name)
	if ctx.Err() != nil {
		return 0
	}
	j.fetchMu.Lock()
	first, news := !j.fetched, err == nil && res.Fingerprint != j.lastFP
	j.fetchErr, j.fetched = err, true
	if err == nil {
		j.lastFP = res.Fingerprint
	}
	j.fetchMu.Unlock()
	switch {
	case err != nil && !res.Fetched.IsZero():
		j.s.opts.Logger.Warn("target provider failed; the last good targets stay", "job", j.cfg.Name,
			"age", res.Age(time.Now()).Round(time.Second), "err", err)
	case err != nil:
		j.s.opts.Logger.Warn("target provider failed; no good targets yet", "job", j.cfg.Name, "err", err)
	case news && !first:
		return reasonTargets
	}
	return 0
}

// loop reshards on every poke until ctx is done. Nothing happens before
// the first member set and the provider's first answer.
func (j *job) loop(ctx context.Context) {
	select {
	case <-j.firstFetch:
	case <-ctx.Done():
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.trigger:
		}
		if j.roster.started() {
			_, _ = j.reshard(ctx, j.takeReasons(), false)
		}
	}
}

// elected reports whether the job's writes depend on the leadership.
func (j *job) elected() bool { return j.s.opts.Elector != nil && j.cfg.Self == "" }

// role is the job's role: "" when it is not elected.
func (j *job) role() Role {
	switch {
	case !j.elected():
		return ""
	case j.s.opts.Elector.Leading():
		return RoleLeader
	}
	return RoleStandby
}

// decides reports whether this copy measures costs and chooses the table:
// a job in central mode, on the only copy or the leader.
func (j *job) decides() bool {
	return j.cfg.Self == "" && (!j.elected() || j.s.opts.Elector.Leading())
}

// snapshot is the job's state, with what each feature holds now.
func (j *job) snapshot() Snapshot {
	j.stateMu.RLock()
	snap := j.snap
	j.stateMu.RUnlock()
	snap.PendingReloads = j.reloads.Pending()
	snap.Reloads = j.reloads.Last()
	snap.HandoffsSince = j.hand.oldest()
	snap.Events = j.events.list()
	snap.Audit = j.audits.report()
	snap.UnscrapedSeconds, snap.DoubleScrapedSeconds = j.audits.gaps()
	if j.bal != nil {
		snap.CollectorsNeeded = collectorsNeeded(snap.Assignment, j.cfg.Balance.Capacity.MaxSeries)
	}
	snap.Epoch, snap.Agrees = j.epochs.current()
	snap.Placement = j.rules.placed()
	if snap.Role = j.role(); snap.Role != "" {
		snap.Leader = j.s.opts.Elector.Leader()
	}
	return snap
}

// adopt takes over what prev, the job of the same name in a Sharder this
// one replaces, knows: events, the assignment in the outputs, costs,
// hand-offs and what the outputs hold.
func (j *job) adopt(prev *job) {
	j.events.adopt(&prev.events)
	prev.stateMu.RLock()
	asg, members, gen := prev.snap.Assignment, prev.snap.Members, prev.snap.Generation
	prev.stateMu.RUnlock()
	j.stateMu.Lock()
	// What changes is counted, and told, against what the outputs held.
	j.snap.Assignment, j.snap.Members, j.snap.Generation = asg, members, gen
	j.stateMu.Unlock()
	j.bal.inherit(prev.bal)
	prev.passMu.Lock()
	written, writtenOf := prev.written, prev.writtenOf
	prev.passMu.Unlock()
	j.passMu.Lock()
	defer j.passMu.Unlock()
	if j.hand.adopt(prev.hand) || j.written == nil {
		j.written, j.writtenOf = written, writtenOf
	}
}

// warnDrain warns when the collectors left after a drain cannot hold the
// measured series within the cap.
func (j *job) warnDrain(id string, rest int) {
	capacity := j.cfg.Balance.Capacity.MaxSeries
	j.stateMu.RLock()
	asg := j.snap.Assignment
	j.stateMu.RUnlock()
	if j.bal == nil || capacity == 0 || asg == nil || asg.Cost == nil {
		return
	}
	var load uint64
	for _, c := range asg.Cost {
		load += c
	}
	if load > uint64(rest)*capacity {
		j.s.opts.Logger.Warn("draining a collector: the others cannot hold its series within max_series; what does not fit will be left unplaced",
			"job", j.cfg.Name, "collector", id, "series", load, "room", uint64(rest)*capacity)
	}
}

// drainedOf are the drained ones among leavers.
func drainedOf(leavers []watch.Member) []watch.Member {
	return slices.DeleteFunc(slices.Clone(leavers), func(m watch.Member) bool { return m.State != watch.StateMaintenance })
}

// memberIDs are the IDs of an assignment's members.
func memberIDs(asg *shard.Assignment) []string {
	ids := make([]string, len(asg.Members))
	for i, m := range asg.Members {
		ids[i] = m.ID
	}
	return ids
}

// inputs is what one pass works from.
type inputs struct {
	members, sick, leavers []watch.Member
	selfFound              bool // self mode: the Self collector is a member or registered
	targets                targets.Result
	sms                    []shard.Member
}

// gather reads the pass's inputs: the members (drains and excluded IDs
// taken out of the ring), the leavers, and the targets in hand.
func (j *job) gather(rep *Report) (in inputs, err error) {
	name := j.cfg.Name
	members, sick := j.roster.get()
	in.sick = sick
	res, terr := j.s.reg.Last(name)
	j.fetchMu.Lock()
	rep.TargetsErr = j.fetchErr
	j.fetchMu.Unlock()
	if terr == nil && res.Fetched.IsZero() {
		terr = cmp.Or(rep.TargetsErr, errors.New("the provider has not answered yet"))
	}
	if terr != nil {
		return in, fmt.Errorf("job %q: no good targets yet: %w", name, terr)
	}
	in.targets = res
	rep.StaleTargets = rep.TargetsErr != nil
	members, drained := splitDrains(members, j.cfg.DrainTag)
	in.members, rep.Excluded = j.checkMembers(members)
	in.leavers = leaversOf(sick, drained, j.outs)
	if j.cfg.Self != "" {
		j.selfID, in.selfFound = resolveSelf(j.cfg.Self, j.cfg.SelfNode, slices.Concat(members, sick, drained))
		j.hand.setSelf(j.selfID)
	}
	now := map[string]bool{}
	for _, m := range in.leavers {
		if m.State != watch.StateMaintenance {
			rep.Leaving = append(rep.Leaving, m.ID)
			continue
		}
		rep.Draining = append(rep.Draining, m.ID)
		now[m.ID] = true
		if !j.draining[m.ID] {
			j.s.m.drains.WithLabelValues(name).Inc()
			j.s.opts.Logger.Info("draining a collector: its targets move as planned, then it gets an empty list",
				"job", name, "collector", m.ID)
			j.warnDrain(m.ID, len(members)-len(drained))
		}
	}
	j.draining = now
	in.sms = j.ringOf(in.members)
	if len(in.sms) == 0 {
		return in, fmt.Errorf("job %q: no healthy collectors: %w", name, shard.ErrNoMembers)
	}
	return in, nil
}

// ringOf is the ring's members for the collectors ms.
func (j *job) ringOf(ms []watch.Member) []shard.Member {
	sms := make([]shard.Member, len(ms))
	for i, m := range ms {
		sms[i] = shard.Member{ID: m.ID, Weight: m.Weight}
		if j.cfg.SpreadBy != "" {
			sms[i].Domain = m.Label(j.cfg.SpreadBy)
		}
	}
	return sms
}

// withAlive puts collectors that left, but that the partition guard found
// alive, back in the ring for one pass.
func (j *job) withAlive(in inputs, alive []watch.Member) inputs {
	back := func(m watch.Member) bool {
		return slices.ContainsFunc(alive, func(a watch.Member) bool { return a.ID == m.ID })
	}
	in.members = slices.Concat(in.members, alive)
	slices.SortFunc(in.members, func(a, b watch.Member) int { return strings.Compare(a.ID, b.ID) })
	in.sick = slices.DeleteFunc(slices.Clone(in.sick), back)
	in.leavers = slices.DeleteFunc(slices.Clone(in.leavers), back)
	in.sms = j.ringOf(in.members)
	return in
}

// checkMembers excludes the members that an output cannot serve, or whose
// weight is above shard.MaxWeight, logging each once.
func (j *job) checkMembers(ms []watch.Member) (ok []watch.Member, excluded []string) {
	ok = ms[:0:0]
	now := map[string]bool{}
	for _, m := range ms {
		bad := j.outs.check(m.ID)
		if m.Weight > shard.MaxWeight {
			bad = fmt.Errorf("weight %d: %w", m.Weight, shard.ErrWeight)
		}
		if bad == nil {
			ok = append(ok, m)
			continue
		}
		excluded = append(excluded, m.ID)
		now[m.ID] = true
		if !j.excluded[m.ID] {
			j.s.opts.Logger.Error("excluding a collector from the ring", "job", j.cfg.Name, "collector", m.ID, "err", bad)
		}
	}
	j.excluded = now
	j.s.m.excluded.WithLabelValues(j.cfg.Name).Set(float64(len(excluded)))
	return ok, excluded
}

// reshard is one pass: inputs, placement, outputs, reloads. With wait it
// reloads the changed collectors itself and waits; otherwise the job's
// reload queue does it in the background, so that a slow collector never
// delays the next reshard.
func (j *job) reshard(ctx context.Context, reason Reason, wait bool) (rep Report, err error) {
	j.passMu.Lock()
	defer j.passMu.Unlock()
	rep = Report{Job: j.cfg.Name, Reason: reason, Start: time.Now()}
	defer func() { j.finish(ctx, &rep, err) }()
	in, err := j.gather(&rep)
	if err != nil {
		return rep, err
	}
	opts, costKey := j.cfg.Shard, uint64(0)
	if b := j.bal; b != nil {
		if j.decides() {
			if err := b.adopt(ctx, j.elected(), in.sms, in.members, in.targets.Groups); err != nil {
				return rep, fmt.Errorf("job %q: balance: %w", j.cfg.Name, err)
			}
		}
		if tab := b.table(); tab != nil {
			opts, costKey = b.placement(in.members, tab.placed), tab.key
		}
	}
	j.stateMu.RLock()
	written := j.snap.Assignment // what the outputs hold
	j.stateMu.RUnlock()
	var gp guardPass
	if written != nil {
		gp = j.guard.check(written, in.members, drainedOf(in.leavers), in.sick, written.Targets, time.Now())
	}
	rep.Held = gp.held
	if gp.hold {
		rep.Skipped, rep.Assignment = true, written
		rep.Members, rep.Targets, rep.Replicas = len(written.Members), written.Targets, written.Replicas
		return rep, nil // the outputs, and what they were written from, stay
	}
	if len(gp.alive) > 0 {
		in = j.withAlive(in, gp.alive)
	}
	stepping := j.guard != nil && written != nil && gp.limit >= 0
	key := j.fp.inputKey(in.targets.Fingerprint^costKey, in.members, in.leavers)
	// Pending hand-offs do not change by themselves between passes: only
	// their end (confirmed, timed out) or a reset does, and it bumps the
	// version, read before the plan so that one ending after it is seen.
	hand := j.hand.version()
	if !wait && key == j.lastKey && hand == j.lastHand && !reason.forces() && !stepping {
		return rep, j.keep(ctx, &rep)
	}
	j.lastKey = 0 // set again only when this pass succeeds
	if j.quorum != nil {
		if cold := written == nil; cold { // the outputs never held an assignment of this job
			if err := j.quorum.hold(len(in.members), time.Now()); err != nil {
				return rep, err
			}
		}
	}
	ring, asg, err := j.place(key, in, j.rules.options(opts, in.targets.Groups))
	if err != nil {
		return rep, err
	}
	j.s.m.dropped.WithLabelValues(j.cfg.Name).Set(float64(j.rules.placed().Dropped))
	j.s.m.isolated.WithLabelValues(j.cfg.Name, "alone").Set(float64(len(asg.Isolated)))
	j.s.m.isolated.WithLabelValues(j.cfg.Name, "crowded").Set(float64(len(asg.Crowded)))
	if len(asg.Crowded) > 0 && (written == nil || !slices.Equal(written.Crowded, asg.Crowded)) {
		j.s.opts.Logger.Warn("isolated targets share a collector: no collector was free for each", "job", j.cfg.Name,
			"crowded", asg.Crowded[:min(5, len(asg.Crowded))], "isolated", len(asg.Isolated)+len(asg.Crowded), "collectors", len(asg.Members))
	}
	left := 0
	if stepping { // the partition guard moves what must move in bounded steps
		asg, left = shard.Step(written, asg, gp.limit)
	}
	rep.Members, rep.Targets, rep.Replicas = len(asg.Members), asg.Targets, asg.Replicas
	if j.elected() && !j.s.opts.Elector.Leading() {
		j.standby(ctx, &rep, ring, asg, in, key)
		return rep, nil
	}
	if err := j.commit(ctx, &rep, ring, asg, in, key, wait); err != nil {
		return rep, err
	}
	j.guard.wrote(asg, time.Now())
	if stepping {
		j.guard.stepped(gp, rep.Diff.Moved, left, time.Now())
		if left > 0 { // the outputs are not yet at the assignment of these inputs
			j.lastKey, j.asgKey = 0, 0
		}
	}
	missing := j.cfg.Self != "" && !in.selfFound
	j.s.m.selfMissing.WithLabelValues(j.cfg.Name).Set(b2f(missing))
	if missing {
		return rep, fmt.Errorf("job %q: self mode: %q is neither a member nor a registered collector (%d members): its output holds an empty list; "+
			"check the member ID (an instance renamed ID@node needs Job.SelfNode)", j.cfg.Name, j.cfg.Self, len(in.members))
	}
	return rep, nil
}

// resolveSelf finds the Self collector among the registered collectors:
// by its ID, or as ID@node on its node. found is false when neither is
// registered.
func resolveSelf(self, node string, registered []watch.Member) (id string, found bool) {
	for _, want := range []string{self, self + "@" + node} {
		if want == self+"@" && node == "" {
			continue
		}
		if slices.ContainsFunc(registered, func(m watch.Member) bool { return m.ID == want }) {
			return want, true
		}
	}
	return self, false
}

// place computes the assignment for the inputs, or reuses the one in the
// snapshot when it was made from the same inputs (a standby's, warm).
func (j *job) place(key uint64, in inputs, opts shard.Options) (shard.Ring, *shard.Assignment, error) {
	j.stateMu.RLock()
	ring, asg := j.snap.Ring, j.snap.Assignment
	j.stateMu.RUnlock()
	if key == j.asgKey && asg != nil {
		return ring, asg, nil
	}
	ring, err := shard.New(j.cfg.Ring, in.sms)
	if err != nil {
		return nil, nil, fmt.Errorf("job %q: %w", j.cfg.Name, err)
	}
	if asg, err = shard.AssignCompact(ring, in.targets.Groups, opts); err != nil {
		return nil, nil, fmt.Errorf("job %q: %w", j.cfg.Name, err)
	}
	return ring, asg, nil
}

// keep ends a pass whose inputs are those of the last one: the outputs
// stay, unless one no longer holds what was written (a file deleted or
// changed by someone else), which is written again.
func (j *job) keep(ctx context.Context, rep *Report) error {
	j.stateMu.RLock()
	asg, members := j.snap.Assignment, j.snap.Members
	leavers := j.snap.Leavers
	j.stateMu.RUnlock()
	rep.Skipped, rep.Assignment = true, asg
	rep.Members, rep.Targets, rep.Replicas = len(asg.Members), asg.Targets, asg.Replicas
	drifted := j.outs.drifted()
	if len(drifted) == 0 || j.s.opts.DryRun || j.role() == RoleStandby {
		j.s.opts.Logger.Debug("reshard skipped: members and targets are as at the last reshard", "job", j.cfg.Name,
			"reason", rep.Reason, "took", time.Since(rep.Start).Round(time.Microsecond))
		return nil
	}
	if j.elected() { // a repair is a write: only the leader makes it, fenced like any other
		if err := j.epochs.fence(ctx, j.s.term.Load(), j.asgKey, memberIDs(asg)); err != nil {
			return fmt.Errorf("job %q: outputs not repaired: %w", j.cfg.Name, err)
		}
	}
	j.s.opts.Logger.Warn("outputs no longer hold what was written (deleted or changed by someone else): writing them again",
		"job", j.cfg.Name, "collectors", drifted)
	changed, err := j.outs.update(ctx, j.selfOnly(j.written))
	rep.Repaired = changed
	j.s.m.repaired.WithLabelValues(j.cfg.Name).Add(float64(len(changed)))
	j.reloads.Add(j.collectors(changed, members, leavers)...)
	if err != nil {
		j.lastKey = 0
		return fmt.Errorf("job %q: repair outputs: %w", j.cfg.Name, err)
	}
	return nil
}

// standby ends the pass of a copy that does not lead: it keeps the
// assignment warm for a takeover and writes nothing. What only a leader
// keeps (hand-offs, what the outputs hold) is dropped: a new leader starts
// from its own plan.
func (j *job) standby(ctx context.Context, rep *Report, ring shard.Ring, asg *shard.Assignment, in inputs, key uint64) {
	rep.Standby, rep.Assignment = true, asg
	if j.hand != nil {
		j.hand.reset()
	}
	j.written, j.writtenOf = nil, nil
	j.lastKey, j.lastHand, j.asgKey = key, j.hand.version(), key
	j.stateMu.Lock()
	j.snap.Assignment, j.snap.Ring, j.snap.Members, j.snap.Leavers = asg, ring, in.members, in.leavers
	j.snap.Groups, j.snap.Handoffs = asg.Groups, 0
	j.stateMu.Unlock()
	j.epochs.read(ctx, key)
	j.s.opts.Logger.Debug("standby: assignment computed, nothing written", "job", j.cfg.Name, "collectors", rep.Members,
		"targets", rep.Targets, "leader", j.s.opts.Elector.Leader())
}

// commit writes an assignment: hand-offs planned, the leader fenced, the
// outputs moved without losing a target, the changed collectors reloaded,
// and the state recorded as it is on disk.
func (j *job) commit(ctx context.Context, rep *Report, ring shard.Ring, asg *shard.Assignment, in inputs, key uint64, wait bool) error {
	name := j.cfg.Name
	j.stateMu.RLock()
	prev, prevMembers := j.snap.Assignment, j.snap.Members
	j.stateMu.RUnlock()
	rep.Diff = shard.Compare(prev, asg)
	groups, kept, hand := asg.Groups, 0, j.hand.version()
	// A target can leave a collector of both only when the diff from what
	// the outputs hold, exactly, says so.
	exact := prev != nil && j.writtenOf == prev
	loses := func(id string) bool { return !exact || rep.Diff.Members[id].Lost > 0 }
	if j.hand != nil && j.written == nil && j.cfg.Self == "" && !j.s.opts.DryRun {
		// A start, or a takeover: what the collectors hold is what is on
		// disk, so targets moving now are handed over like any others.
		j.written = j.outs.held(groups)
	}
	if j.hand != nil { // a drained collector still scrapes: its targets are handed over
		alive := slices.Concat(in.members, slices.DeleteFunc(slices.Clone(in.leavers),
			func(m watch.Member) bool { return m.State != watch.StateMaintenance }))
		groups, kept = j.hand.plan(j.written, groups, j.fp.memberKey(in.members), alive, time.Now(), exact, rep.Diff)
	}
	groups = withEmpty(groups, in.leavers)
	if j.elected() && !j.s.opts.DryRun {
		if err := j.epochs.fence(ctx, j.s.term.Load(), key, memberIDs(asg)); err != nil {
			return fmt.Errorf("job %q: not written: %w", name, err)
		}
	}
	var werr error
	if !j.s.opts.DryRun {
		var held map[string][]*tstore.Group
		held, rep.Changed, werr = j.outs.write(ctx, j.selfOnly(j.written), j.selfOnly(groups),
			rep.Diff.Moved > 0 && len(j.outs.files) > 0, loses)
		if j.cfg.Self == "" {
			j.written = held
		} else if werr == nil {
			j.written = groups
		}
		j.writtenOf = nil
		if werr == nil && kept == 0 && j.cfg.Self == "" {
			j.writtenOf = asg
		}
	}
	if j.cfg.Self != "" { // the outputs know the Self collector by Self; the ring by its member ID
		for i, id := range rep.Changed {
			if id == j.cfg.Self {
				rep.Changed[i] = cmp.Or(j.selfID, id)
			}
		}
	}
	// What was written is reloaded even when another write failed.
	cs := j.collectors(stillThere(rep.Changed, in.members, in.leavers, in.sick), in.members, slices.Concat(prevMembers, in.leavers))
	if wait {
		rep.Reloads = j.reloads.Now(ctx, cs)
	} else {
		j.reloads.Add(cs...)
	}
	if werr != nil {
		return fmt.Errorf("job %q: output (written again at the next refresh; every target is still in an output): %w", name, werr)
	}
	rep.Assignment = asg
	if !j.s.opts.DryRun {
		rep.Files = map[string]string{}
		for _, m := range asg.Members {
			switch {
			case j.cfg.Self == "":
				if f := j.outs.file(m.ID); f != "" {
					rep.Files[m.ID] = f
				}
			case m.ID == j.selfID:
				if f := j.outs.file(j.cfg.Self); f != "" {
					rep.Files[m.ID] = f
				}
			}
		}
	}
	// Outputs that hold kept targets are written again when the hand-offs
	// end: that bumps their version.
	j.lastKey, j.lastHand, j.asgKey = key, hand, key
	var heaviest map[string][]shard.TargetLoad
	if costs := j.bal.table(); costs != nil {
		heaviest = shard.Heaviest(asg, costs.placed, heaviestN)
	}
	j.stateMu.Lock()
	handoffsBefore := j.snap.Handoffs
	j.snap.Assignment, j.snap.Ring, j.snap.Members, j.snap.LastSuccess = asg, ring, in.members, time.Now()
	j.snap.Groups, j.snap.Handoffs, j.snap.Leavers = groups, j.hand.count(), in.leavers
	j.snap.Heaviest = heaviest
	handoffs := j.snap.Handoffs
	if prev == nil || rep.Diff.Changed() || len(rep.Changed) > 0 {
		j.snap.Generation++ // the outputs changed (a hand-off ending changes them alone)
	}
	j.stateMu.Unlock()
	j.events.add(changeEvents(prev, asg, in.leavers, rep.Diff, handoffs, handoffsBefore, time.Now())...)
	j.roster.left(in.members, prevMembers, time.Now())
	if j.epochs != nil && !j.elected() {
		j.epochs.read(ctx, key)
	}
	j.audits.after()
	j.s.m.assigned(name, asg, prev)
	if j.bal != nil {
		if need := collectorsNeeded(asg, j.cfg.Balance.Capacity.MaxSeries); need > 0 {
			j.s.m.needed.WithLabelValues(name).Set(float64(need))
			if need > len(asg.Members) {
				j.s.opts.Logger.Warn("balance: the pool is too small for its measured series with headroom for a loss",
					"job", name, "collectors", len(asg.Members), "needed", need, "max_series", j.cfg.Balance.Capacity.MaxSeries)
			}
		}
		j.s.m.unplaced.WithLabelValues(name).Set(float64(len(asg.Unplaced)))
		if len(asg.Unplaced) > 0 {
			j.s.opts.Logger.Warn("balance: targets left unplaced: no collector has room for them within its max_series",
				"job", name, "unplaced", len(asg.Unplaced), "first", asg.Unplaced[:min(5, len(asg.Unplaced))])
		}
	}
	ep, _ := j.epochs.current()
	j.s.opts.Logger.Info("reshard", "job", name, "reason", rep.Reason, "collectors", rep.Members, "targets", rep.Targets,
		"replicas", rep.Replicas, "added", rep.Diff.Added, "removed", rep.Diff.Removed, "moved", rep.Diff.Moved,
		"draining", rep.Draining, "leaving", rep.Leaving, "outputs_changed", len(rep.Changed), "reloads", len(cs),
		"epoch", ep.Epoch, "took", time.Since(rep.Start).Round(time.Microsecond))
	if asg.Degraded() {
		j.s.opts.Logger.Warn("fewer collectors than replicas: every collector scrapes everything", "job", name,
			"replicas", asg.RequestedReplicas, "collectors", len(asg.Members))
	}
	return nil
}

// finish records a pass: metrics, the snapshot's history, the log of a
// failure, and Options.OnReshard.
func (j *job) finish(ctx context.Context, rep *Report, err error) {
	name := j.cfg.Name
	rep.Took, rep.Err = time.Since(rep.Start), err
	j.s.m.observe(name, *rep)
	slim := *rep
	slim.Assignment, slim.Files, slim.Reloads, slim.Diff.Members = nil, nil, nil, nil
	j.stateMu.Lock()
	j.snap.Last = *rep
	j.snap.Recent = append([]Report{slim}, j.snap.Recent[:min(len(j.snap.Recent), recentReshards-1)]...)
	j.stateMu.Unlock()
	if err != nil && ctx.Err() == nil {
		j.s.opts.Logger.Error("reshard failed", "job", name, "reason", rep.Reason, "changed", rep.Changed, "err", err)
		j.events.add(Event{Time: time.Now(), Kind: eventFailed, Collectors: rep.Changed, Text: "reshard failed: " + err.Error()})
	}
	if f := j.s.opts.OnReshard; f != nil {
		f(*rep)
	}
}

// selfOnly narrows groups to the Self collector in self mode: every output
// gets only its entry (an empty list when it has none).
func (j *job) selfOnly(groups map[string][]*tstore.Group) map[string][]*tstore.Group {
	self := j.cfg.Self
	if self == "" || groups == nil {
		return groups
	}
	gs := groups[cmp.Or(j.selfID, self)]
	if gs == nil {
		gs = []*tstore.Group{}
	}
	return map[string][]*tstore.Group{self: gs}
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
		out = append(out, reload.Collector{ID: id, Address: addr, File: j.outs.file(id)})
	}
	return out
}

// confirmHandoffs reads what the awaited new owners scrape and ends the
// hand-offs they confirm or that timed out; then the outputs drop those
// targets from their old owners.
func (j *job) confirmHandoffs(ctx context.Context) {
	waited := j.hand.awaited()
	if len(waited) == 0 {
		return
	}
	members, _ := j.roster.get()
	seen := map[string]map[string]audit.Scrape{}
	for _, id := range waited {
		i := slices.IndexFunc(members, func(m watch.Member) bool { return m.ID == id })
		if i < 0 {
			continue // it left: the next reshard cancels its hand-offs
		}
		got, err := j.s.reader.Read(ctx, audit.Collector{ID: id, URL: j.s.opts.CollectorURL(members[i])}, j.pool())
		if err != nil {
			j.s.opts.Logger.Debug("hand-off: a new owner did not answer", "job", j.cfg.Name, "collector", id, "err", err)
			continue
		}
		seen[id] = got
	}
	if n := j.hand.confirm(seen, time.Now()); n > 0 {
		ids := slices.Sorted(maps.Keys(seen))
		j.events.add(Event{Time: time.Now(), Kind: eventConfirm, Collectors: ids, Moved: n,
			Text: fmt.Sprintf("hand-off: %d targets confirmed scraped by their new owners (%s); the old ones let go", n, strings.Join(ids, ", "))})
		j.poke(reasonHandoff)
	}
}

// pool is the collectors' scrape job that reads the job's targets.
func (j *job) pool() string {
	if j.cfg.ScrapePool != "" {
		return j.cfg.ScrapePool
	}
	return j.cfg.Name
}

// auditCollectors are the collectors an audit or a cost read asks.
func (j *job) auditCollectors(snap Snapshot) []audit.Collector {
	return collectorsOf(snap, j.cfg.Known, j.roster.recentlyLeft(time.Now()), j.s.opts.CollectorURL)
}

// audit audits the job once and repairs the collectors due.
func (j *job) audit(ctx context.Context) {
	snap := j.snapshot()
	due := j.audits.run(ctx, snap, j.auditCollectors(snap), j.hand.addresses())
	j.events.auditEvent(j.audits.report())
	if len(due) == 0 {
		return
	}
	j.poke(reasonRepair)
	j.reloads.Add(j.collectors(due, snap.Members, nil)...)
}

// balanceTick runs the balancer's periodic look at costs.
func (j *job) balanceTick(ctx context.Context) {
	snap := j.snapshot()
	if r := j.bal.tick(ctx, j.decides(), j.elected(), j.s.term.Load(), snap, j.auditCollectors(snap)); r != 0 {
		j.poke(r)
	}
}
