package promsd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/sdrun"
	"github.com/promshard/promshard/targets"
)

// ParseConfigs reads service discovery configs written as in a Prometheus
// scrape job, e.g.
//
//	consul_sd_configs:
//	  - server: 127.0.0.1:8500
//	    services: [node-exporter]
//
// Unknown keys are errors. A *_sd_configs key whose mechanism's package is
// not imported fails with an error that wraps [ErrNotCompiled] and names
// the key.
func ParseConfigs(b []byte) (discovery.Configs, error) { return sdrun.ParseConfigs("promsd", b) }

// ErrNotCompiled says that a service discovery mechanism is not compiled
// into the program.
var ErrNotCompiled = sdrun.ErrNotCompiled

// DefaultUpdateInterval is how often the discovery manager passes on
// updates, as in Prometheus.
const DefaultUpdateInterval = 5 * time.Second

// Options configures a [Discovery].
type Options struct {
	// UpdateInterval throttles updates from the discovery manager; zero
	// means [DefaultUpdateInterval].
	UpdateInterval time.Duration
	// Logger receives the discovery mechanisms' logs; nil discards.
	Logger *slog.Logger
	// Registerer receives Prometheus' discovery metrics, labelled with the
	// job; nil registers none.
	Registerer prometheus.Registerer
}

// Discovery runs Prometheus service discovery for one job. Start it with
// Run (a targets.Registry does that); Targets waits for the first
// discovery.
type Discovery struct {
	job   string
	run   *sdrun.Runner
	ready chan struct{}
	once  sync.Once

	mu     sync.Mutex
	groups []*targetgroup.Group
}

var (
	_ targets.Provider = (*Discovery)(nil)
	_ targets.Runner   = (*Discovery)(nil)
)

// New validates the configs and registers the discovery metrics. It starts
// nothing.
func New(job string, cfgs discovery.Configs, opts Options) (*Discovery, error) {
	if job == "" {
		return nil, errors.New("promsd: empty job name")
	}
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("promsd: job %q: no service discovery config", job)
	}
	if opts.UpdateInterval < 0 {
		return nil, fmt.Errorf("promsd: Options.UpdateInterval %v: must not be negative", opts.UpdateInterval)
	}
	if opts.UpdateInterval == 0 {
		opts.UpdateInterval = DefaultUpdateInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	if reg != nil {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"shard_job": job}, reg)
	}
	run, err := sdrun.New(job, cfgs, opts.UpdateInterval, opts.Logger, reg)
	if err != nil {
		return nil, fmt.Errorf("promsd: job %w", err)
	}
	return &Discovery{job: job, run: run, ready: make(chan struct{})}, nil
}

// Run runs the discovery until ctx is done, sending on changed after every
// update. It returns an error when the configs cannot be applied.
func (p *Discovery) Run(ctx context.Context, changed chan<- struct{}) error {
	err := p.run.Run(ctx, func(gs []*targetgroup.Group) bool {
		p.mu.Lock()
		p.groups = gs
		p.mu.Unlock()
		p.once.Do(func() { close(p.ready) })
		select {
		case changed <- struct{}{}:
			return true
		case <-ctx.Done():
			return false
		}
	})
	if err != nil {
		return fmt.Errorf("promsd: job %w", err)
	}
	return nil
}

// Targets returns the groups of the last update. Before the first update
// it waits for it, or for ctx.
func (p *Discovery) Targets(ctx context.Context) ([]*targetgroup.Group, error) {
	select {
	case <-p.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("promsd: job %q: no discovery yet: %w", p.job, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.groups), nil
}
