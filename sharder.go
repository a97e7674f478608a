package promshard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/watch"
)

// Defaults and bounds of [Options].
const (
	DefaultRefreshInterval = time.Minute
	// MinRefreshInterval is the shortest refresh interval accepted: a
	// refresh rereads every provider, and below a second that is load
	// without benefit (changes are noticed without waiting for the timer).
	MinRefreshInterval = time.Second
)

// ErrNotStarted is returned for a job whose member source has not reported
// yet, or that has no assignment yet.
var ErrNotStarted = errors.New("promshard: no member set yet")

// Options configures a [Sharder]. Zero values get the documented defaults.
type Options struct {
	// RefreshInterval is how often each job rereads providers that do not
	// watch by themselves and checks that its outputs still hold what was
	// written. Default [DefaultRefreshInterval], at least
	// [MinRefreshInterval].
	RefreshInterval time.Duration
	// Registry holds the providers of jobs whose Targets is nil. Nil means
	// the Sharder keeps a registry of its own.
	Registry *targets.Registry
	// DryRun computes assignments but writes and reloads nothing.
	DryRun bool
	// Reload is how the reload queue of each job retries (backoff, and the
	// attempts for a collector that may be gone). Its Gate and Status are
	// the Sharder's own: the leader fence, and the job's roster.
	Reload reload.QueueOptions
	// Audit checks what the collectors actually scrape; off unless
	// Audit.Options is set.
	Audit AuditOptions
	// Handoff makes planned moves gap-free; off unless Handoff.Enabled.
	Handoff HandoffOptions
	// CollectorURL is the base URL of a collector's Prometheus API, for the
	// audit, hand-offs and costs; nil means http://address:port.
	CollectorURL func(watch.Member) string
	// Registrar, when set, keeps collectors registered in Consul for the
	// life of Run (see [watch.Registrar]): Run runs it and reshards only
	// once its collectors are registered and their first checks passed (or
	// its InitialWait ran out), so that a fresh start never shards to the
	// one collector whose check ran first; Once registers them and waits
	// the same way.
	Registrar *watch.Registrar
	// Elector, when set, runs central mode as several copies: only the
	// leader writes outputs and reloads collectors, each write fenced by a
	// check with the election's source of truth, and each new plan
	// published as an epoch (see [Elector]). Jobs in self mode are not
	// elected.
	Elector Elector
	// Store, when set, keeps what the leader decided by measurement for
	// the other copies: the cost tables of jobs balanced by series.
	Store BlobStore
	// OnReshard, when set, is called with the report of every reshard,
	// failed or not, while the job's reshard still holds its lock: keep it
	// short, and do not call Sharder.Reshard from it.
	OnReshard func(Report)
	// Logger receives one line per reshard and every failure; nil discards.
	Logger *slog.Logger
	// Registerer receives the Sharder's metrics, and those of the registry
	// and reload pools it creates (with a shard_job label); nil registers
	// none.
	Registerer prometheus.Registerer
}

// AuditOptions turn on the audit of what the collectors actually scrape
// against each job's assignment (package audit). Off when Options is nil:
// the library cannot know that member addresses are Prometheus APIs.
type AuditOptions struct {
	// Options are the auditor's (the Sharder's Logger and Registerer where
	// they are unset).
	Options *audit.Options
	// Interval is how often a job is audited besides after each reshard;
	// zero means 30 seconds. The last report is in Snapshot.Audit.
	Interval time.Duration
	// RepairAfter, when positive, repairs a collector that disagrees with
	// its assignment (a target missing or extra, not in transit) for that
	// long: its job writes its outputs again and the collector is
	// reloaded. Zero never repairs.
	RepairAfter time.Duration
}

// HandoffOptions make planned moves gap-free: when a target moves from a
// live collector to another (one joined or came back, weights changed, a
// drain), the new owner gets it at once and the old one keeps it until the
// new owner's Prometheus reports it scraped (health up, scraped after the
// move began; read as the audit reads), or Timeout passed. Meanwhile R+1
// collectors scrape it. A move away from a collector that left is
// immediate. Off unless Enabled, for the audit's reason.
type HandoffOptions struct {
	Enabled bool
	// Timeout bounds how long an old owner keeps a target that its new
	// owner was not seen scraping; zero means 2 minutes.
	Timeout time.Duration
}

func (o *Options) setDefaults() error {
	for name, d := range map[string]time.Duration{"RefreshInterval": o.RefreshInterval,
		"Audit.Interval": o.Audit.Interval, "Audit.RepairAfter": o.Audit.RepairAfter, "Handoff.Timeout": o.Handoff.Timeout} {
		if d < 0 {
			return fmt.Errorf("promshard: Options.%s %v: must not be negative", name, d)
		}
	}
	o.RefreshInterval = cmp.Or(o.RefreshInterval, DefaultRefreshInterval)
	if o.RefreshInterval < MinRefreshInterval {
		return fmt.Errorf("promshard: Options.RefreshInterval %v: must be at least %v", o.RefreshInterval, MinRefreshInterval)
	}
	o.Audit.Interval = cmp.Or(o.Audit.Interval, defaultAuditInterval)
	o.Handoff.Timeout = cmp.Or(o.Handoff.Timeout, defaultHandoffTimeout)
	if o.CollectorURL == nil {
		o.CollectorURL = func(m watch.Member) string { return "http://" + m.HostPort() }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Sharder owns the reshard loop of one or more jobs: it follows the healthy
// collectors and the targets, places the targets on a ring, hands each
// collector its share through the job's outputs and reloads the collectors
// whose share changed. Create it with [New]; run it with [Sharder.Run].
type Sharder struct {
	opts   Options
	audit  *audit.Auditor // nil without Options.Audit
	plain  *audit.Auditor // reads collectors without Options.Audit
	reader scrapeReader   // reads what collectors scrape, for hand-offs
	reg    *targets.Registry
	m      *metrics
	jobs   []*job
	byName map[string]*job
	term   atomic.Uint64 // counts leadership changes
}

// New validates the jobs and options and registers the metrics. It does no
// I/O and starts nothing.
func New(jobs []Job, opts Options) (*Sharder, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if len(jobs) == 0 {
		return nil, errors.New("promshard: no job")
	}
	s := &Sharder{opts: opts, reg: opts.Registry, byName: map[string]*job{}}
	var err error
	if s.reg == nil {
		if s.reg, err = targets.NewRegistry(targets.RegistryOptions{Logger: opts.Logger, Registerer: opts.Registerer}); err != nil {
			return nil, err
		}
	}
	if s.m, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	if ao := opts.Audit.Options; ao != nil {
		o := *ao
		o.Logger, o.Registerer = cmp.Or(o.Logger, opts.Logger), cmp.Or(o.Registerer, opts.Registerer)
		if s.audit, err = audit.New(o); err != nil {
			return nil, fmt.Errorf("promshard: Options.Audit: %w", err)
		}
	}
	if opts.Handoff.Enabled {
		if s.reader, err = s.collectorReader(); err != nil {
			return nil, err
		}
	}
	for i, jc := range jobs {
		j, err := s.newJob(jc)
		if err != nil {
			return nil, fmt.Errorf("promshard: jobs[%d] (%s): %w", i, jc.Name, err)
		}
		s.jobs = append(s.jobs, j)
		s.byName[jc.Name] = j
	}
	return s, nil
}

// collectorReader is the auditor that reads collectors for hand-offs and
// costs: the audit's, else a plain one, made once.
func (s *Sharder) collectorReader() (*audit.Auditor, error) {
	if s.audit != nil {
		return s.audit, nil
	}
	if s.plain == nil {
		a, err := audit.New(audit.Options{Logger: s.opts.Logger})
		if err != nil {
			return nil, err
		}
		s.plain = a
	}
	return s.plain, nil
}

// Jobs returns the job names in the order given to [New].
func (s *Sharder) Jobs() []string {
	out := make([]string, len(s.jobs))
	for i, j := range s.jobs {
		out[i] = j.cfg.Name
	}
	return out
}

// Job returns the configuration of a job, as [New] took it (its Outputs
// included, such as an http_sd handler to serve).
func (s *Sharder) Job(name string) (Job, error) {
	j, err := s.job(name)
	if err != nil {
		return Job{}, err
	}
	return j.cfg, nil
}

func (s *Sharder) job(name string) (*job, error) {
	j, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("promshard: unknown job %q (jobs: %v)", name, s.Jobs())
	}
	return j, nil
}

// Run reshards every job until ctx is done: when its member set changes,
// when its targets change, and every RefreshInterval (which also checks
// the outputs), with bursts coalesced into one reshard. It runs the member
// sources (members, and those of jobs that name their own, each once
// however many jobs share it), the providers (each refreshed in the
// background: a reshard never waits for one), and each job's reloads.
//
// Run returns nil only when ctx ends. When a part fails for good (a member
// source or a provider returns an error, or stops) Run stops the others and
// returns that error, naming the part. Failures that a retry can mend (a
// reshard, a reload, a fetch) are logged, counted and retried; they do not
// end Run.
func (s *Sharder) Run(ctx context.Context, members watch.Source) error {
	parent := ctx
	g, ctx := errgroup.WithContext(ctx)
	part := func(name string, fn func() error) {
		g.Go(func() error {
			err := fn()
			switch {
			case parent.Err() != nil:
				return nil
			case err != nil:
				s.opts.Logger.Error("a part failed; stopping", "part", name, "err", err)
				return fmt.Errorf("%s: %w", name, err)
			case ctx.Err() == nil:
				return fmt.Errorf("%s stopped", name)
			}
			return nil
		})
	}
	groups, err := s.sources(members)
	if err != nil {
		return err
	}
	if r := s.opts.Registrar; r != nil {
		part("consul registrar", func() error { return r.Run(ctx) })
		select { // its collectors registered and checked
		case <-r.Ready():
		case <-ctx.Done():
			if err := g.Wait(); parent.Err() == nil {
				return err // the registrar failed for good
			}
			return nil
		}
	}
	for _, sg := range groups {
		ch := make(chan []watch.Member)
		part(fmt.Sprintf("member source of %v", sg.names()), func() error { return sg.src.Run(ctx, ch) })
		g.Go(func() error { sg.forward(ctx, ch); return nil })
	}
	if el := s.opts.Elector; el != nil {
		lead := make(chan struct{}, 1)
		part("leader election", func() error { return el.Run(ctx, lead) })
		g.Go(func() error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-lead:
					s.leadershipChanged()
				}
			}
		})
	}
	changed := make(chan string)
	part("target discovery", func() error { return s.reg.Run(ctx, changed) })
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case name := <-changed:
				if j := s.byName[name]; j != nil {
					j.fetchSoon()
				}
			}
		}
	})
	for _, j := range s.jobs {
		j.run(ctx, g.Go)
	}
	s.opts.Logger.Info("sharder running", "jobs", s.Jobs(), "refresh_interval", s.opts.RefreshInterval)
	err = g.Wait()
	if err != nil && parent.Err() == nil {
		return err
	}
	return nil
}

// leadershipChanged follows the elector: the metrics, and a reshard of each
// elected job (a new leader writes at once; one that lost the lead drops
// what only a leader keeps).
func (s *Sharder) leadershipChanged() {
	s.term.Add(1)
	leading := s.opts.Elector.Leading()
	s.m.leaderChanges.Inc()
	role := RoleStandby
	if leading {
		role = RoleLeader
	}
	for _, j := range s.jobs {
		if j.elected() {
			s.m.leader.WithLabelValues(j.cfg.Name).Set(b2f(leading))
			j.events.add(Event{Time: time.Now(), Kind: eventLeader, Text: fmt.Sprintf("this copy is now %s (leader: %s)", role, s.opts.Elector.Leader())})
			j.poke(reasonLeader)
		}
	}
}

// ReleaseGuard lets a job's held move happen at once (see
// [PartitionGuard]): the operator knows the collectors that left are dead.
// It reports whether the guard was holding.
func (s *Sharder) ReleaseGuard(job string) (bool, error) {
	j, err := s.job(job)
	if err != nil {
		return false, err
	}
	if !j.guard.release() {
		return false, nil
	}
	j.poke(reasonRequest)
	return true, nil
}

// Adopt takes over what prev, a Sharder this one replaces (a config
// reload), knows of each job of the same name: its last good targets
// (until this Sharder's provider answers), its events, its cost table, and
// its pending hand-offs with what its outputs hold. A provider or an output
// that is an [Inheritor] inherits from the one in its place. Call it before Run,
// after prev's Run has returned.
func (s *Sharder) Adopt(prev *Sharder) {
	for _, j := range s.jobs {
		if pj := prev.byName[j.cfg.Name]; pj != nil {
			if last, err := prev.reg.Last(j.cfg.Name); err == nil && !last.Fetched.IsZero() {
				_ = s.reg.Seed(j.cfg.Name, last) // the job is registered: New did it
			}
			j.adopt(pj)
			inherit(j.cfg.Targets, pj.cfg.Targets)
			for i, o := range j.cfg.Outputs {
				if i < len(pj.cfg.Outputs) {
					inherit(o, pj.cfg.Outputs[i])
				}
			}
		}
	}
}

// inherit hands prev to next when next is an Inheritor.
func inherit(next, prev any) {
	if in, ok := next.(Inheritor); ok && prev != nil {
		in.Inherit(prev)
	}
}

// Once registers the collectors of Options.Registrar and waits for their
// first checks, then waits for each job's first member set, fetches its
// targets, reshards it once, and waits for the reloads of the collectors
// whose output changed. It is the "-once" of a command line: it returns a
// report per job and the errors of the jobs that failed, joined.
func (s *Sharder) Once(ctx context.Context, members watch.Source) ([]Report, error) {
	groups, err := s.sources(members)
	if err != nil {
		return nil, err
	}
	if err := s.opts.Registrar.RegisterAndWait(ctx); err != nil { // checks start critical
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	defer func() { cancel(); _ = g.Wait() }()
	for _, sg := range groups {
		ch := make(chan []watch.Member)
		g.Go(func() error { return sg.src.Run(gctx, ch) })
		g.Go(func() error { sg.forward(gctx, ch); return nil })
	}
	g.Go(func() error { return s.reg.Run(gctx, nil) })
	var reports []Report
	var errs []error
	for _, j := range s.jobs {
		select {
		case <-j.roster.haveCh:
		case <-gctx.Done():
			err := context.Cause(gctx)
			if e := ctx.Err(); e != nil {
				err = e
			}
			errs = append(errs, fmt.Errorf("job %q: no member set: %w", j.cfg.Name, err))
			continue
		}
		j.fetch(ctx)
		rep, err := j.reshard(ctx, reasonOnce, true)
		reports = append(reports, rep)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return reports, errors.Join(errs...)
}

// Reshard runs one pass of a job now, with its current member set: fetch
// the targets, assign, update the outputs, and reload the collectors whose
// output changed, waiting for those reloads. It fails with [ErrNotStarted]
// before the job's member source first reported.
func (s *Sharder) Reshard(ctx context.Context, job string) (Report, error) {
	j, err := s.job(job)
	if err != nil {
		return Report{}, err
	}
	if !j.roster.started() {
		return Report{Job: job}, fmt.Errorf("job %q: %w", job, ErrNotStarted)
	}
	j.fetch(ctx)
	return j.reshard(ctx, reasonRequest, true)
}

// SetMembers gives a job its member set by hand, for a caller that runs its
// own member source (or none: a fixed list). It triggers a reshard when
// [Sharder.Run] is running.
func (s *Sharder) SetMembers(job string, ms []watch.Member) error {
	j, err := s.job(job)
	if err != nil {
		return err
	}
	j.setMembers(ms, nil)
	return nil
}

// Snapshot returns a job's state. The assignment and ring are shared:
// treat them as read-only.
func (s *Sharder) Snapshot(job string) (Snapshot, error) {
	j, err := s.job(job)
	if err != nil {
		return Snapshot{}, err
	}
	return j.snapshot(), nil
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
	j, err := s.job(job)
	if err != nil {
		return shard.Explanation{}, err
	}
	var pl shard.Placement
	var note string
	if res, err := s.reg.Last(job); err == nil {
	find:
		for _, g := range res.Groups {
			for i, addr := range g.Targets {
				if addr == target {
					pl, note = j.rules.explain(g.Labels, g.Target(i))
					break find
				}
			}
		}
	}
	return shard.ExplainPlacement(snap.Ring, snap.Assignment, target, model.LabelName(snap.KeyLabel), pl, note), nil
}

// Simulate computes what change would do to a job now: over its current
// ring members and the targets in hand (a provider is not read), placed
// exactly as a reshard would place them, and with capacity (targets per
// collector; 0: none) how many would be above it. A job balanced by series
// with a cap also gets the sizing: how many collectors its measured series
// need after the change (Simulation.CollectorsNeeded). It changes nothing:
// an ops daemon asks it before it drains a host. It stops when ctx ends.
func (s *Sharder) Simulate(ctx context.Context, job string, change shard.Change, capacity int) (*shard.Simulation, error) {
	j, err := s.job(job)
	if err != nil {
		return nil, err
	}
	snap := j.snapshot()
	if snap.Assignment == nil {
		return nil, fmt.Errorf("job %q: %w", job, ErrNotStarted)
	}
	res, err := s.reg.Last(job)
	if err != nil || res.Fetched.IsZero() {
		return nil, fmt.Errorf("job %q: no targets in hand: %w", job, cmp.Or(err, ErrNotStarted))
	}
	for _, m := range change.Add { // the outputs would leave it out of the ring
		if err := j.outs.check(m.ID); err != nil {
			return nil, fmt.Errorf("job %q: add %q: the outputs cannot serve this ID: %w", job, m.ID, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sim, err := shard.SimulateCompact(ctx, snap.Assignment.Ring, snap.Assignment.Members, res.Groups, j.rules.options(j.cfg.Shard, res.Groups), change, capacity)
	if err != nil || j.bal == nil || snap.Assignment.Cost == nil {
		return sim, err
	}
	after, err := change.Apply(snap.Assignment.Members)
	if err != nil {
		return nil, err
	}
	sim.CollectorsNeeded = shard.CollectorsNeeded(assignedLoad(snap.Assignment), j.cfg.Balance.Capacity.MaxSeries, after)
	return sim, nil
}

// sourceGroup is one member source and the jobs that follow it.
type sourceGroup struct {
	src  watch.Source
	jobs []*job
}

func (sg *sourceGroup) names() []string {
	out := make([]string, len(sg.jobs))
	for i, j := range sg.jobs {
		out[i] = j.cfg.Name
	}
	return out
}

// forward hands every member set from ch to the group's jobs.
func (sg *sourceGroup) forward(ctx context.Context, ch <-chan []watch.Member) {
	roster, _ := sg.src.(watch.Roster) // asserted once
	for {
		select {
		case <-ctx.Done():
			return
		case ms := <-ch:
			var sick []watch.Member // nil: the source keeps no roster
			if roster != nil {
				sick = append([]watch.Member{}, roster.Unhealthy()...)
			}
			for _, j := range sg.jobs {
				j.setMembers(ms, sick)
			}
		}
	}
}

// sources groups the jobs by member source: one watch per distinct source.
func (s *Sharder) sources(def watch.Source) ([]*sourceGroup, error) {
	var out []*sourceGroup
	for _, j := range s.jobs {
		src := j.cfg.Members
		if src == nil {
			src = def
		}
		if src == nil {
			return nil, fmt.Errorf("promshard: job %q has no member source (Job.Members, or one given to Run)", j.cfg.Name)
		}
		i := slices.IndexFunc(out, func(sg *sourceGroup) bool { return sameSource(sg.src, src) })
		if i < 0 {
			out = append(out, &sourceGroup{src: src})
			i = len(out) - 1
		}
		out[i].jobs = append(out[i].jobs, j)
	}
	return out, nil
}

// sameSource reports whether two sources are the same value; sources of a
// type that cannot be compared are never shared.
func sameSource(a, b watch.Source) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}
