package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promshard/promshard/internal/promutil"
)

// Errors returned (wrapped) by reloaders.
var (
	// ErrLifecycleDisabled means Prometheus runs without
	// --web.enable-lifecycle, so /-/reload is refused. Retrying cannot fix
	// it.
	ErrLifecycleDisabled = errors.New("reload: Prometheus lifecycle API is not enabled (start it with --web.enable-lifecycle)")
	// ErrReloadFailed means Prometheus tried to reload and failed, usually
	// because its configuration does not load; the error carries its answer.
	ErrReloadFailed = errors.New("reload: Prometheus failed to reload")
)

// Collector is one collector to reload.
type Collector struct {
	// ID identifies the collector (a Consul service ID or address:port).
	ID string
	// Address is the host:port of the collector's Prometheus web API.
	Address string
	// File is the collector's file_sd file, if there is one.
	File string
}

// Reloader tells one collector that its targets changed. Implementations
// are safe for concurrent use.
type Reloader interface {
	Reload(ctx context.Context, c Collector) error
}

// None is a Reloader that does nothing: Prometheus' file_sd and http_sd
// notice changes by themselves.
type None struct{}

// Reload does nothing and returns nil.
func (None) Reload(context.Context, Collector) error { return nil }

// Result is the outcome of one collector's reload.
type Result struct {
	Collector Collector
	// Err is nil when the reload succeeded.
	Err      error
	Duration time.Duration
	// At is when the reload ended.
	At time.Time
}

// Results are the outcomes of a [Pool.Reload], in the order of the
// collectors given.
type Results []Result

// Err joins the errors of the collectors that failed, each prefixed with
// the collector ID; nil when all succeeded.
func (rs Results) Err() error {
	var errs []error
	for _, r := range rs {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("collector %q: %w", r.Collector.ID, r.Err))
		}
	}
	return errors.Join(errs...)
}

// Failed returns the IDs of the collectors whose reload failed.
func (rs Results) Failed() []string {
	var out []string
	for _, r := range rs {
		if r.Err != nil {
			out = append(out, r.Collector.ID)
		}
	}
	return out
}

// DefaultConcurrency is the number of reloads a [Pool] runs at once.
const DefaultConcurrency = 8

// PoolOptions configures a [Pool].
type PoolOptions struct {
	// Concurrency bounds the reloads running at once; zero means
	// [DefaultConcurrency].
	Concurrency int
	// Logger receives one line per failed reload; nil discards.
	Logger *slog.Logger
	// Registerer receives the pool's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Pool runs a Reloader against many collectors at once.
type Pool struct {
	r        Reloader
	opts     PoolOptions
	sem      chan struct{} // bounds the reloads of every call together
	total    *prometheus.CounterVec
	duration prometheus.Histogram
}

// NewPool validates opts and registers the pool's metrics.
func NewPool(r Reloader, opts PoolOptions) (*Pool, error) {
	if r == nil {
		return nil, errors.New("reload: nil Reloader")
	}
	if opts.Concurrency < 0 {
		return nil, fmt.Errorf("reload: PoolOptions.Concurrency %d: must not be negative", opts.Concurrency)
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{r: r, opts: opts, sem: make(chan struct{}, opts.Concurrency),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_reload_total",
			Help: "Reloads of collectors, by collector and result (success or error)."}, []string{"member", "result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "promshard_reload_duration_seconds",
			Help: "Duration of one collector's reload, retries included.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}),
	}
	if err := promutil.Register(opts.Registerer, "reload: register metrics", p.total, p.duration); err != nil {
		return nil, err
	}
	return p, nil
}

// Reload reloads every collector and waits for all of them (or ctx). At
// most Concurrency reloads of the pool run at once, over all the calls in
// progress. Each collector's outcome is in the results; a
// failure of one does not stop the others.
func (p *Pool) Reload(ctx context.Context, cs []Collector) Results {
	res := make(Results, len(cs))
	sem := p.sem
	var wg sync.WaitGroup
	for i, c := range cs {
		res[i].Collector = c
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			res[i].Err = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			err := p.r.Reload(ctx, c)
			res[i].Err, res[i].Duration, res[i].At = err, time.Since(start), time.Now()
			p.duration.Observe(res[i].Duration.Seconds())
			result := "success"
			if err != nil {
				result = "error"
				if ctx.Err() == nil {
					p.opts.Logger.Warn("reload failed", "collector", c.ID, "address", c.Address, "err", err)
				}
			}
			p.total.WithLabelValues(c.ID, result).Inc()
		})
	}
	wg.Wait()
	return res
}

// Forget drops the metrics of collectors that are gone, so that a pool of
// changing collectors does not grow its series without bound.
func (p *Pool) Forget(ids ...string) {
	for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
		p.total.DeleteLabelValues(id, "success")
		p.total.DeleteLabelValues(id, "error")
	}
}
