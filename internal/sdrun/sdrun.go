// Package sdrun runs Prometheus' own service discovery for promshard: the
// part that targets/promsd (targets) and watch/promsd (collectors) share.
// It parses *_sd_configs as a scrape job writes them and runs them through
// github.com/prometheus/prometheus/discovery's manager, so that updates are
// merged exactly as Prometheus merges them.
package sdrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.yaml.in/yaml/v2"
)

// ErrNotCompiled says that a service discovery mechanism is not compiled
// into the program.
var ErrNotCompiled = errors.New("not compiled into this program")

// ParseConfigs reads service discovery configs written as in a Prometheus
// scrape job. Unknown keys are errors. A *_sd_configs key whose
// mechanism's package is not imported fails with an error that wraps
// [ErrNotCompiled] and names the key. what names the caller in errors.
func ParseConfigs(what string, b []byte) (discovery.Configs, error) {
	var c discovery.Configs
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		var keys yaml.MapSlice
		_ = yaml.Unmarshal(b, &keys)
		for _, kv := range keys {
			k, _ := kv.Key.(string)
			var one discovery.Configs
			if strings.HasSuffix(k, "_sd_configs") && yaml.UnmarshalStrict([]byte(k+": []"), &one) != nil {
				return nil, fmt.Errorf("%s: %s: %w (its package is not imported, or the name is misspelt)", what, k, ErrNotCompiled)
			}
		}
		return nil, fmt.Errorf("%s: service discovery configs: %w", what, err)
	}
	if len(c) == 0 {
		return nil, fmt.Errorf("%s: no service discovery config given", what)
	}
	return c, nil
}

// Runner runs one set of configs under one name.
type Runner struct {
	name     string
	cfgs     discovery.Configs
	interval time.Duration
	log      *slog.Logger
	reg      prometheus.Registerer
	sdm      *discovery.SDMetrics
}

// New registers Prometheus' discovery metrics on reg (nil: none are
// gathered) and starts nothing. interval throttles updates, as
// Prometheus' discovery manager does.
func New(name string, cfgs discovery.Configs, interval time.Duration, log *slog.Logger, reg prometheus.Registerer) (*Runner, error) {
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("%q: no service discovery config", name)
	}
	if interval <= 0 {
		return nil, fmt.Errorf("%q: update interval %v: must be positive", name, interval)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry() // metrics nobody gathers
	}
	sdm, err := discovery.CreateAndRegisterSDMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, err)
	}
	return &Runner{name: name, cfgs: cfgs, interval: interval, log: log, reg: reg, sdm: sdm}, nil
}

// Run runs the discovery until ctx is done and calls update with every
// full set of groups (empty groups left out), from one goroutine. update
// returns false to stop. Run returns an error when the configs cannot be
// applied, nil when ctx ends.
func (r *Runner) Run(ctx context.Context, update func([]*targetgroup.Group) bool) error {
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := discovery.NewManager(mctx, r.log, r.reg, r.sdm, discovery.Name("promshard"), discovery.Updatert(r.interval))
	if m == nil {
		return fmt.Errorf("%q: the discovery manager could not be created (metrics already registered?)", r.name)
	}
	defer m.UnregisterMetrics()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run()
	}()
	defer func() { cancel(); <-done }()
	if err := m.ApplyConfig(map[string]discovery.Configs{r.name: r.cfgs}); err != nil {
		return fmt.Errorf("%q: %w", r.name, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case all := <-m.SyncCh():
			gs := slices.DeleteFunc(slices.Clone(all[r.name]), func(g *targetgroup.Group) bool {
				return g == nil || len(g.Targets) == 0
			})
			if !update(gs) {
				return nil
			}
		}
	}
}
