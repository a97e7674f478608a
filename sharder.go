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
	"github.com/prometheus/prometheus/discovery/targetgroup"
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
	// reshard rereads every provider, and below a second that is load
	// without benefit (changes are noticed without waiting for the timer).
	MinRefreshInterval      = time.Second
	DefaultReloadBackoffMin = time.Second
	DefaultReloadBackoffMax = 30 * time.Second
	// DefaultAuditInterval is how often a job is audited besides after
	// each reshard.
	DefaultAuditInterval = 30 * time.Second
	// DefaultDepartedReloadAttempts bounds the reload attempts of a
	// collector that is no longer a healthy member (it may be dead for good).
	DefaultDepartedReloadAttempts = 10
)

// ErrNoMembers is returned by a reshard while a job has no healthy member.
// The outputs stay as they are.
var ErrNoMembers = shard.ErrNoMembers

// ErrNotStarted is returned by [Sharder.Reshard] for a job whose member
// source has not reported yet.
var ErrNotStarted = errors.New("promshard: no member set yet")

// Output is where a job's assignment goes after each reshard: a directory
// of file_sd files ([filesd.Dir]), an http_sd endpoint ([filesd.Handler]),
// one collector's own file in self mode ([filesd.MemberFile]), or anything
// of a user's (a Consul KV writer, an upload).
//
// Update receives every member's groups, keyed by member ID, with an entry
// (possibly empty) for each member that must have output, and returns the
// IDs whose output changed, so that only those collectors are reloaded. An
// error may come with IDs that did change (some files written, one failed):
// they are reloaded all the same. Update is never called concurrently for
// one job.
//
// [filesd.Dir]: https://pkg.go.dev/github.com/promshard/promshard/filesd#Dir
// [filesd.Handler]: https://pkg.go.dev/github.com/promshard/promshard/filesd#Handler
// [filesd.MemberFile]: https://pkg.go.dev/github.com/promshard/promshard/filesd#MemberFile
type Output interface {
	Update(ctx context.Context, groups map[string][]*targetgroup.Group) (changed []string, err error)
}

// MemberChecker is implemented by outputs that cannot serve every member ID
// (a file name cannot hold "../x"). A member that an output rejects is left
// out of the ring, with an error log and the metric
// promshard_excluded_members, instead of failing the whole job: the others
// are sharded as usual.
type MemberChecker interface {
	CheckMember(id string) error
}

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
	// with this member ID and its outputs receive only that member's groups
	// (an empty list while it is not a healthy member, so that its old
	// targets are not scraped twice). Use a [filesd.MemberFile] as output;
	// a [filesd.Dir] is narrowed to the Self collector's file.
	//
	// [filesd.MemberFile]: https://pkg.go.dev/github.com/promshard/promshard/filesd#MemberFile
	Self string
	// Members is the job's member source; nil means the source given to
	// [Sharder.Run] or [Sharder.Once]. Jobs that name the same source share
	// one watch of it.
	Members watch.Source
	// Known are collectors known beyond the member set (from a config):
	// their addresses are used to reload a collector that is not a healthy
	// member, such as the Self collector while its check fails.
	Known []watch.Member
}

// Options configures a [Sharder]. Zero values get the documented defaults.
type Options struct {
	// RefreshInterval is how often every job reshards even when nothing
	// reported a change (providers that do not watch by themselves are
	// read then). Default [DefaultRefreshInterval], at least
	// [MinRefreshInterval].
	RefreshInterval time.Duration
	// Registry holds the providers of jobs whose Targets is nil. Nil means
	// the Sharder keeps a registry of its own.
	Registry *targets.Registry
	// DryRun computes assignments but writes and reloads nothing.
	DryRun bool
	// ReloadBackoffMin and ReloadBackoffMax bound the wait before a failed
	// reload is tried again; defaults [DefaultReloadBackoffMin] and
	// [DefaultReloadBackoffMax].
	ReloadBackoffMin, ReloadBackoffMax time.Duration
	// DepartedReloadAttempts bounds the attempts to reload a collector that
	// left the member set when its source keeps no roster (a
	// [watch.Roster] tells whether it is still registered: then it is
	// retried until it succeeds, comes back or is gone); default
	// [DefaultDepartedReloadAttempts].
	DepartedReloadAttempts int
	// Audit, when set, turns on the audit of what the collectors actually
	// scrape against each job's assignment (see package audit), with these
	// options (the Sharder's Logger and Registerer where they are unset):
	// after each reshard and every AuditInterval (default
	// [DefaultAuditInterval]). It asks the assignment's collectors, the
	// Known ones and those that left in the last 10 minutes (a collector
	// that left but still runs is caught scraping, as extra).
	// Snapshot.Audit holds the last report, and the Handler serves it. Off
	// when nil: the library cannot know that member addresses are
	// Prometheus APIs.
	Audit         *audit.Options
	AuditInterval time.Duration
	// AuditRepairAfter, when positive, repairs a collector that disagrees
	// with its assignment (a target missing or extra, not in transit) for
	// that long: its job reshards, which rewrites a file changed by hand,
	// and the collector is reloaded. Zero never repairs.
	AuditRepairAfter time.Duration
	// CollectorURL is the base URL of a collector's Prometheus API, for the
	// audit; nil means CollectorScheme://address:port.
	CollectorURL func(watch.Member) string
	// CollectorScheme is "http" (the default) or "https".
	CollectorScheme string
	// Handoff makes planned moves gap-free: when a target moves from a live
	// collector to another (one joined or came back, weights changed), the
	// new owner gets it at once and the old one keeps it until the new
	// owner's Prometheus reports it scraped (health up, scraped after the
	// move began; read as the audit reads), or HandoffTimeout (default
	// [DefaultHandoffTimeout]) passed. Meanwhile R+1 collectors scrape it.
	// A move away from a collector that left is immediate, as without it.
	// Off when false, for the audit's reason.
	Handoff        bool
	HandoffTimeout time.Duration
	// Listen, when set, is the address Run serves [Sharder.Handler] on
	// while it runs (the status page, the API, /metrics, /-/healthy).
	Listen string
	// Pprof adds Go's profiles to the Handler under /debug/pprof/ (CPU,
	// heap, goroutines...): off by default, as they expose the process.
	Pprof bool
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
	// OnReshard, when set, is called with the report of every reshard,
	// failed or not, while the job's reshard still holds its lock: keep it
	// short, and do not call Sharder.Reshard from it.
	OnReshard func(Report)
	// Logger receives one line per reshard and every failure; nil discards.
	Logger *slog.Logger
	// Registerer receives the Sharder's metrics, and those of the registry
	// and reload pools it creates (with a job label); nil registers none.
	Registerer prometheus.Registerer
}

func (o *Options) setDefaults() error {
	for name, d := range map[string]time.Duration{"RefreshInterval": o.RefreshInterval,
		"ReloadBackoffMin": o.ReloadBackoffMin, "ReloadBackoffMax": o.ReloadBackoffMax,
		"AuditInterval": o.AuditInterval, "AuditRepairAfter": o.AuditRepairAfter, "HandoffTimeout": o.HandoffTimeout} {
		if d < 0 {
			return fmt.Errorf("promshard: Options.%s %v: must not be negative", name, d)
		}
	}
	o.RefreshInterval = cmp.Or(o.RefreshInterval, DefaultRefreshInterval)
	o.AuditInterval = cmp.Or(o.AuditInterval, DefaultAuditInterval)
	o.HandoffTimeout = cmp.Or(o.HandoffTimeout, DefaultHandoffTimeout)
	if o.CollectorScheme = cmp.Or(o.CollectorScheme, "http"); o.CollectorScheme != "http" && o.CollectorScheme != "https" {
		return fmt.Errorf("promshard: Options.CollectorScheme %q: want http or https", o.CollectorScheme)
	}
	if o.CollectorURL == nil {
		scheme := o.CollectorScheme
		o.CollectorURL = func(m watch.Member) string { return scheme + "://" + m.HostPort() }
	}
	if o.RefreshInterval < MinRefreshInterval {
		return fmt.Errorf("promshard: Options.RefreshInterval %v: must be at least %v", o.RefreshInterval, MinRefreshInterval)
	}
	o.ReloadBackoffMin = cmp.Or(o.ReloadBackoffMin, DefaultReloadBackoffMin)
	o.ReloadBackoffMax = cmp.Or(o.ReloadBackoffMax, DefaultReloadBackoffMax)
	if o.ReloadBackoffMax < o.ReloadBackoffMin {
		return fmt.Errorf("promshard: Options.ReloadBackoffMax %v: less than ReloadBackoffMin %v", o.ReloadBackoffMax, o.ReloadBackoffMin)
	}
	if o.DepartedReloadAttempts < 0 {
		return fmt.Errorf("promshard: Options.DepartedReloadAttempts %d: must not be negative", o.DepartedReloadAttempts)
	}
	o.DepartedReloadAttempts = cmp.Or(o.DepartedReloadAttempts, DefaultDepartedReloadAttempts)
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
	plain  *audit.Auditor // reads collectors without Options.Audit (hand-offs, costs)
	reader scrapeReader   // reads collectors for hand-offs: audit, or one of its own
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
	if ao := opts.Audit; ao != nil {
		o := *ao
		o.Logger, o.Registerer = cmp.Or(o.Logger, opts.Logger), cmp.Or(o.Registerer, opts.Registerer)
		if s.audit, err = audit.New(o); err != nil {
			return nil, fmt.Errorf("promshard: Options.Audit: %w", err)
		}
	}
	if opts.Handoff {
		if s.reader, err = s.seriesReader(); err != nil {
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

// seriesReader is the auditor that reads collectors for hand-offs and
// costs: the audit's, else a plain one, made once.
func (s *Sharder) seriesReader() (*audit.Auditor, error) {
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

func (s *Sharder) job(name string) (*job, error) {
	j, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("promshard: unknown job %q (jobs: %v)", name, s.Jobs())
	}
	return j, nil
}

// Run reshards every job until ctx is done: when its member set changes,
// when its provider reports new targets, and every RefreshInterval, with
// bursts coalesced into one reshard. It runs the member sources (members,
// and those of jobs that name their own, each once however many jobs share
// it), the providers that watch by themselves, and each job's reloads.
//
// Run returns nil only when ctx ends. When a part fails for good (a member
// source or a provider returns an error, or stops) Run stops the others and
// returns that error, naming the part. Failures that a retry can mend (a
// reshard, a reload) are logged, counted and retried; they do not end Run.
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
	if addr := s.opts.Listen; addr != "" {
		part("http server on "+addr, func() error { return Serve(ctx, addr, s.Handler()) })
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
					j.poke("targets")
				}
			}
		}
	})
	for _, j := range s.jobs {
		g.Go(func() error { j.loop(ctx); return nil })
		g.Go(func() error { j.reloads.run(ctx); return nil })
		if s.audit != nil {
			g.Go(func() error { j.auditLoop(ctx); return nil })
		}
		if s.opts.Handoff {
			g.Go(func() error { j.handoffLoop(ctx); return nil })
		}
		if j.balancing() {
			g.Go(func() error { j.balanceLoop(ctx); return nil })
		}
	}
	s.opts.Logger.Info("sharder running", "jobs", s.Jobs(), "refresh_interval", s.opts.RefreshInterval)
	err = g.Wait()
	if err != nil && parent.Err() == nil {
		return err
	}
	return nil
}

// Once registers the collectors of Options.Registrar and waits for their
// first checks, then waits for each job's first member set, reshards it once, and waits
// for the reloads of the collectors whose output changed. It is the
// "-once" of a command line: it returns a report per job and the errors of
// the jobs that failed, joined.
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
		case <-j.haveCh:
		case <-gctx.Done():
			err := context.Cause(gctx)
			if e := ctx.Err(); e != nil {
				err = e
			}
			errs = append(errs, fmt.Errorf("job %q: no member set: %w", j.cfg.Name, err))
			continue
		}
		rep, err := j.reshard(ctx, "once", true)
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
	select {
	case <-j.haveCh:
	default:
		return Report{Job: job}, fmt.Errorf("job %q: %w", job, ErrNotStarted)
	}
	return j.reshard(ctx, "request", true)
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
	for {
		select {
		case <-ctx.Done():
			return
		case ms := <-ch:
			var sick []watch.Member // nil: the source keeps no roster
			if r, ok := sg.src.(watch.Roster); ok {
				sick = append([]watch.Member{}, r.Unhealthy()...)
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
