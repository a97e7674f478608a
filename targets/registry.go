package targets

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/promutil"
	"github.com/promshard/promshard/internal/tstore"
)

// Errors of the registry, wrapped with the job.
var (
	// ErrUnknownJob means no provider is registered under a job name.
	ErrUnknownJob = errors.New("targets: unknown job")
	// ErrSuddenDrop means a provider's targets dropped by more than
	// JobOptions.MaxDrop twice in a row with different answers: the
	// source looks caught mid-change, and the last good targets stay.
	ErrSuddenDrop = errors.New("targets: sudden drop not confirmed")
	// ErrEmpty means a provider returned no targets and the job does not
	// allow that ([JobOptions.AllowEmpty]): the last good targets stay, and
	// before any good answer there are none to write.
	ErrEmpty = errors.New("targets: provider returned no targets")
)

// DefaultTimeout bounds one fetch from a provider.
const DefaultTimeout = 30 * time.Second

// RegistryOptions configures a [Registry].
type RegistryOptions struct {
	// Timeout bounds one fetch; zero means [DefaultTimeout]. A provider
	// with a longer timeout of its own (an [HTTPSD] provider's
	// HTTPSDOptions.Timeout) gets that.
	Timeout time.Duration
	// Logger receives fetch errors and invalid groups; nil discards.
	Logger *slog.Logger
	// Registerer receives the registry's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// JobOptions configures one job of a [Registry].
type JobOptions struct {
	// AllowEmpty accepts an empty result. By default an empty answer is
	// taken for a failure of the source (an empty CMDB answer, a file
	// truncated by hand, a restart while the source is not ready): the last
	// good targets stay, and a first answer that is empty is an error, so
	// that no collector's file is emptied by accident.
	AllowEmpty bool
	// MaxDrop is the fraction of the last good targets that may disappear
	// in one fetch without a second read to confirm it; default
	// [DefaultMaxDrop], 1 turns the check off. A larger drop is read again
	// after ConfirmDelay (default [DefaultConfirmDelay]): the same answer
	// (the same targets, not only as many) confirms it; an answer within MaxDrop of the last good one replaces
	// it; another large drop is an error ([ErrSuddenDrop]) and the last good
	// targets stay until the next fetch.
	MaxDrop      float64
	ConfirmDelay time.Duration
}

// Defaults of [JobOptions].
const (
	DefaultMaxDrop      = 0.5
	DefaultConfirmDelay = 2 * time.Second
)

func (o JobOptions) maxDrop() float64 {
	if o.MaxDrop <= 0 {
		return DefaultMaxDrop
	}
	return o.MaxDrop
}

func (o JobOptions) confirmDelay() time.Duration {
	if o.ConfirmDelay <= 0 {
		return DefaultConfirmDelay
	}
	return o.ConfirmDelay
}

// Result is what [Registry.Targets] returns for a job.
type Result struct {
	// Groups are the valid groups of the last good fetch, in the module's
	// compact form (each target its address, a label set only for one with
	// labels of its own): [Result.TargetGroups] gives them as
	// [targetgroup.Group] values. They are shared: treat them as read-only.
	Groups []*tstore.Group
	// Fetched is when Groups were fetched; zero when there never was a
	// good fetch.
	Fetched time.Time
	// Stale is true when this fetch failed and Groups are from an earlier
	// one.
	Stale bool
	// Invalid lists the groups of the last good fetch that were dropped.
	Invalid []*GroupError
	// Fingerprint is an order-independent hash of Groups: every group's
	// source and labels and every target's labels. Equal results have
	// equal fingerprints, whatever the order of groups and targets; a
	// changed label changes it (but for a 64-bit collision). It is computed
	// as the fetch is validated, at no extra pass over the targets.
	Fingerprint uint64

	checks map[*tstore.Group]groupCheck // how each group of the fetch was validated
}

// TargetGroups returns Groups as [targetgroup.Group] values (a label set
// made for each target that is its address alone).
func (r Result) TargetGroups() []*targetgroup.Group { return tstore.All(r.Groups) }

// Age returns how old the groups are at now.
func (r Result) Age(now time.Time) time.Duration {
	if r.Fetched.IsZero() {
		return 0
	}
	return now.Sub(r.Fetched)
}

// Targets counts the targets of all groups.
func (r Result) Targets() int {
	return tstore.Count(r.Groups)
}

type job struct {
	name string
	p    Provider
	opts JobOptions

	fetchMu sync.Mutex // serialises fetches of one job
	// conv is each group of the provider's last answer in compact form
	// (providers that do not answer in it): a group given back is the
	// same compact group, so its check is not made again. Its keys are
	// weak: a provider that makes new groups for every answer does not
	// have the old ones, and their label sets, kept. Under fetchMu.
	conv map[weak.Pointer[targetgroup.Group]]*tstore.Group
	mu   sync.Mutex // guards last: Last never waits for a fetch
	last Result
}

// compactProvider is a provider that answers in the compact form: [File]
// and [HTTPSD].
type compactProvider interface {
	compactTargets(ctx context.Context) ([]*tstore.Group, error)
}

// compact is the provider's answer in compact form: a group it gave back
// from its last answer is the compact group made then.
func (j *job) compact(groups []*targetgroup.Group) []*tstore.Group {
	out := make([]*tstore.Group, 0, len(groups))
	conv := make(map[weak.Pointer[targetgroup.Group]]*tstore.Group, len(groups))
	for _, g := range groups {
		if g == nil {
			continue
		}
		k := weak.Make(g)
		c, ok := j.conv[k]
		if !ok || len(c.Targets) != len(g.Targets) {
			c = tstore.From(g)
		}
		conv[k] = c
		out = append(out, c)
	}
	j.conv = conv
	return out
}

// Registry maps job names to providers and keeps each job's last good
// targets. It is safe for concurrent use.
type Registry struct {
	opts RegistryOptions
	m    *regMetrics

	mu   sync.RWMutex
	jobs map[string]*job
}

// NewRegistry returns an empty registry and registers its metrics.
func NewRegistry(opts RegistryOptions) (*Registry, error) {
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("targets: RegistryOptions.Timeout %v: must not be negative", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newRegMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Registry{opts: opts, m: m, jobs: map[string]*job{}}, nil
}

// Register adds a provider under a job name.
func (r *Registry) Register(name string, p Provider, opts JobOptions) error {
	if name == "" {
		return errors.New("targets: Register: empty job name")
	}
	if p == nil {
		return fmt.Errorf("targets: Register job %q: nil provider", name)
	}
	if opts.MaxDrop < 0 || opts.MaxDrop > 1 || opts.ConfirmDelay < 0 {
		return fmt.Errorf("targets: Register job %q: JobOptions.MaxDrop %v (want 0 to 1) or ConfirmDelay %v (want ≥ 0)",
			name, opts.MaxDrop, opts.ConfirmDelay)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.jobs[name]; ok {
		return fmt.Errorf("targets: Register job %q: already registered", name)
	}
	r.jobs[name] = &job{name: name, p: p, opts: opts}
	return nil
}

// Jobs returns the registered job names, sorted.
func (r *Registry) Jobs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.jobs))
}

func (r *Registry) job(name string) (*job, error) {
	r.mu.RLock()
	j, ok := r.jobs[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (registered: %s)", ErrUnknownJob, name, strings.Join(r.Jobs(), ", "))
	}
	return j, nil
}

// Provider returns the provider registered under a job name.
func (r *Registry) Provider(name string) (Provider, error) {
	j, err := r.job(name)
	if err != nil {
		return nil, err
	}
	return j.p, nil
}

// Targets fetches a job's targets, validates them and returns the valid
// groups. When the fetch fails (an error, the timeout, or an unexpected
// empty answer) the error is returned together with the last good result,
// marked Stale, if there was one: callers that keep going with it lose
// nothing.
func (r *Registry) Targets(ctx context.Context, name string) (Result, error) {
	j, err := r.job(name)
	if err != nil {
		return Result{}, err
	}
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	j.mu.Lock()
	prev := j.last
	j.mu.Unlock()
	valid, invalid, fp, checks, err := r.fetch(ctx, j, prev.checks)
	if n, last := (Result{Groups: valid}).Targets(), prev.Targets(); err == nil && last > 0 && n < last &&
		float64(last-n) > j.opts.maxDrop()*float64(last) {
		// A sudden large drop is often a source caught mid-write (a YAML
		// file truncated while it is rewritten is still valid YAML): read
		// again after a pause, and believe the drop only if it stays.
		r.opts.Logger.Warn("targets dropped suddenly; reading again to confirm", "job", name, "from", last, "to", n,
			"max_drop", j.opts.maxDrop(), "in", j.opts.confirmDelay())
		t := time.NewTimer(j.opts.confirmDelay())
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
			v2, inv2, fp2, checks2, err2 := r.fetch(ctx, j, checks)
			n2 := (Result{Groups: v2}).Targets()
			switch {
			case err2 != nil:
				err = err2
			case fp2 == fp:
				// The very same targets twice, ConfirmDelay apart: the source
				// is stable, the drop is real. (An equal count is no proof: a
				// file rewritten again and again can be caught cut twice.)
				r.opts.Logger.Warn("sudden drop of targets confirmed by a second read", "job", name, "from", last, "to", n)
			case float64(last-n2) > j.opts.maxDrop()*float64(last):
				err = fmt.Errorf("%w: from %d to %d, then %d other targets: the source is still changing", ErrSuddenDrop, last, n, n2)
			}
			valid, invalid, fp, checks = v2, inv2, fp2, checks2
		}
		t.Stop()
	}
	if err != nil {
		r.m.errors.WithLabelValues(name).Inc()
		r.m.stale.WithLabelValues(name).Set(1)
		last := prev
		last.Stale = !last.Fetched.IsZero()
		return last, fmt.Errorf("targets: job %q: %w", name, err)
	}
	for _, e := range invalid {
		r.opts.Logger.Warn("dropping invalid target group", "job", e.Job, "source", e.Source, "reason", e.Reason)
	}
	if fp == prev.Fingerprint && !prev.Fetched.IsZero() {
		// The same targets: the groups in hand stay, so that what was
		// built from them (a writer's encoded files) is known for theirs.
		valid = prev.Groups
	}
	res := Result{Groups: valid, Fetched: time.Now(), Invalid: invalid, Fingerprint: fp, checks: checks}
	j.mu.Lock()
	j.last = res
	j.mu.Unlock()
	r.m.targets.WithLabelValues(name).Set(float64(res.Targets()))
	r.m.invalid.WithLabelValues(name).Set(float64(len(invalid)))
	r.m.lastSuccess.WithLabelValues(name).Set(float64(res.Fetched.UnixNano()) / 1e9)
	r.m.stale.WithLabelValues(name).Set(0)
	return res, nil
}

// timeouter is a provider with a timeout of its own (an HTTP fetch): a
// fetch may take that long even when it exceeds RegistryOptions.Timeout.
type timeouter interface{ Timeout() time.Duration }

// fetch reads a job's provider once, within the timeout, and validates what
// it returned (a group checked in prev, the same *Group, is not checked
// again). An empty answer is an error unless the job allows it.
func (r *Registry) fetch(ctx context.Context, j *job, prev map[*tstore.Group]groupCheck) (valid []*tstore.Group, invalid []*GroupError, fp uint64, checks map[*tstore.Group]groupCheck, err error) {
	start := time.Now()
	timeout := r.opts.Timeout
	if tp, ok := j.p.(timeouter); ok {
		timeout = max(timeout, tp.Timeout())
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	var groups []*tstore.Group
	if cp, ok := j.p.(compactProvider); ok {
		groups, err = cp.compactTargets(fctx)
	} else {
		var tgs []*targetgroup.Group
		if tgs, err = j.p.Targets(fctx); err == nil {
			groups = j.compact(tgs)
		}
	}
	cancel()
	r.m.duration.WithLabelValues(j.name).Observe(time.Since(start).Seconds())
	if fctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		err = fmt.Errorf("timed out after %v (%v)", timeout, cmp.Or(err, error(context.DeadlineExceeded)))
	}
	if err != nil {
		return nil, nil, 0, nil, err
	}
	valid, invalid, fp, checks = validate(j.name, groups, prev)
	if (Result{Groups: valid}).Targets() == 0 && !j.opts.AllowEmpty {
		err = ErrEmpty
		if len(invalid) > 0 {
			err = fmt.Errorf("%w (%d groups invalid, first: %v)", ErrEmpty, len(invalid), invalid[0])
		}
	}
	return valid, invalid, fp, checks, err
}

// Seed gives a job a last good result before its provider has answered:
// the targets a process that is replaced (a config reload) had in hand, so
// that a provider that is down at the start does not leave the job with
// none. It does nothing once the job has a good fetch of its own.
func (r *Registry) Seed(name string, res Result) error {
	j, err := r.job(name)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.last.Fetched.IsZero() {
		j.last = res
	}
	return nil
}

// Last returns a job's last good result without fetching, and without
// waiting for a fetch in progress.
func (r *Registry) Last(name string) (Result, error) {
	j, err := r.job(name)
	if err != nil {
		return Result{}, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.last, nil
}

// Run runs every registered provider that is a [Runner] until ctx is done,
// and sends a job's name on changed when its provider reports new targets.
// Reports of one job are coalesced while the receiver is busy. Run returns
// nil when ctx is done, or the first error a Runner returns before that.
func (r *Registry) Run(ctx context.Context, changed chan<- string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		pending = map[string]bool{}
		trigger = make(chan struct{}, 1)
		errc    = make(chan error, 1)
		wg      sync.WaitGroup
	)
	for _, name := range r.Jobs() {
		j, _ := r.job(name)
		run, ok := j.p.(Runner)
		if !ok {
			continue
		}
		ch := make(chan struct{})
		wg.Go(func() {
			for {
				select {
				case <-ch:
				case <-ctx.Done():
					return
				}
				mu.Lock()
				pending[name] = true
				mu.Unlock()
				select {
				case trigger <- struct{}{}:
				default:
				}
			}
		})
		wg.Go(func() {
			if err := run.Run(ctx, ch); err != nil && ctx.Err() == nil {
				select {
				case errc <- fmt.Errorf("targets: job %q: %w", name, err):
				default:
				}
				cancel()
			}
		})
	}
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			select {
			case err := <-errc:
				return err
			default:
				return nil
			}
		case <-trigger:
		}
		mu.Lock()
		names := slices.Sorted(maps.Keys(pending))
		clear(pending)
		mu.Unlock()
		for _, n := range names {
			select {
			case changed <- n:
			case <-ctx.Done():
			}
		}
	}
}

type regMetrics struct {
	targets, invalid, lastSuccess, stale *prometheus.GaugeVec
	errors                               *prometheus.CounterVec
	duration                             *prometheus.HistogramVec
}

func newRegMetrics(reg prometheus.Registerer) (*regMetrics, error) {
	l := []string{"shard_job"}
	m := &regMetrics{
		targets: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_targets_targets",
			Help: "Valid targets of the last good fetch, by job."}, l),
		invalid: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_targets_invalid_groups",
			Help: "Groups, or single targets, dropped as invalid in the last good fetch, by job."}, l),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_targets_last_success_timestamp_seconds",
			Help: "Unix time of the last good fetch, by job."}, l),
		stale: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_targets_stale",
			Help: "1 when the last fetch failed and the job runs on its last good targets."}, l),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_targets_fetch_errors_total",
			Help: "Failed fetches (errors, timeouts, unexpected empty answers), by job."}, l),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "promshard_targets_fetch_duration_seconds",
			Help: "Duration of fetches, by job.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}, l),
	}
	if err := promutil.Register(reg, "targets: register metrics",
		m.targets, m.invalid, m.lastSuccess, m.stale, m.errors, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}
