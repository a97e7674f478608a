package promsd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/promshard/promshard/internal/sdrun"
	"github.com/promshard/promshard/internal/weight"
	"github.com/promshard/promshard/watch"
)

// The reserved labels a discovered target carries, after relabelling, to
// describe its collector. Each has a default set before relabelling, so a
// rule may read or overwrite it; labels that do not start with "__" become
// the member's Meta (what spread_by and max_series read).
const (
	// IDLabel is the member ID; by default the Kubernetes pod name
	// (__meta_kubernetes_pod_name), else __address__.
	IDLabel = "__promshard_id__"
	// WeightLabel is the member's weight, 1 to shard.MaxWeight; absent or
	// empty means 1.
	WeightLabel = "__promshard_weight__"
	// HealthyLabel is "false" for a collector its discovery knows but
	// that must not be in the ring. Its default is "true", except for
	// Kubernetes targets: a pod that is not ready or not running, an
	// endpoint that is not ready, or one that is terminating, is "false".
	HealthyLabel = "__promshard_healthy__"
	// DrainLabel is "true" for a collector to drain: its targets move to
	// the others by the usual hand-off, then it gets an empty list.
	DrainLabel = "__promshard_drain__"
)

// Defaults of [Options].
const (
	DefaultUpdateInterval = time.Second
	DefaultSettle         = 5 * time.Second
)

// Options configures a [Source].
type Options struct {
	// Name labels the source's metrics and logs; required.
	Name string
	// Configs are the service discovery configs that find the
	// collectors ([ParseConfigs] reads them from YAML).
	Configs discovery.Configs
	// Relabel is applied to every discovered target, with Prometheus'
	// semantics, before the reserved labels are read; a target it drops
	// is no collector.
	Relabel []*relabel.Config
	// Probe, when set, is run against every collector that its discovery
	// calls healthy, every ProbeInterval (zero: watch.DefaultProbeInterval)
	// with ProbeTimeout (zero: watch.DefaultProbeTimeout); one whose last
	// probe failed is out of the ring.
	Probe                       watch.Probe
	ProbeInterval, ProbeTimeout time.Duration
	// Settle damps flapping, as the Consul watcher does: a collector that
	// joins, or comes back, is in the set once it has been healthy for
	// Settle; one that stops being healthy leaves at once. Zero means
	// [DefaultSettle]; a negative value turns damping off.
	Settle time.Duration
	// UpdateInterval throttles updates from the discovery manager; zero
	// means [DefaultUpdateInterval].
	UpdateInterval time.Duration
	// Logger receives changes and the discovery mechanisms' logs; nil
	// discards them.
	Logger *slog.Logger
	// Registerer receives the source's metrics and Prometheus' discovery
	// metrics (named with the prefix promshard_members_, so that they do
	// not collide with a target provider's), labelled source="Name"; nil
	// registers none.
	Registerer prometheus.Registerer
}

// Source is a [watch.Source] and a [watch.Roster] over Prometheus service
// discovery.
type Source struct {
	opts  Options
	run   *sdrun.Runner
	m     *metrics
	kick  chan struct{}       // size 1: discovery changed
	found chan []watch.Member // size 1: the latest discovered collectors

	mu        sync.Mutex
	unhealthy []watch.Member
	bad       map[string]bool // targets already logged as no collector
}

var (
	_ watch.Source = (*Source)(nil)
	_ watch.Roster = (*Source)(nil)
)

// ParseConfigs reads service discovery configs written as in a Prometheus
// scrape job (kubernetes_sd_configs, dns_sd_configs, file_sd_configs, …).
// A mechanism whose package is not imported is an error that wraps
// [ErrNotCompiled].
func ParseConfigs(b []byte) (discovery.Configs, error) { return sdrun.ParseConfigs("watch/promsd", b) }

// ErrNotCompiled says that a service discovery mechanism is not compiled
// into the program.
var ErrNotCompiled = sdrun.ErrNotCompiled

// New validates opts and registers the metrics. It does no I/O and starts
// nothing.
func New(opts Options) (*Source, error) {
	if opts.Name == "" {
		return nil, errors.New("watch/promsd: Options.Name is empty")
	}
	if len(opts.Configs) == 0 {
		return nil, fmt.Errorf("watch/promsd: %q: Options.Configs: no service discovery config", opts.Name)
	}
	if opts.ProbeInterval < 0 || opts.ProbeTimeout < 0 || opts.UpdateInterval < 0 {
		return nil, fmt.Errorf("watch/promsd: %q: ProbeInterval %v, ProbeTimeout %v, UpdateInterval %v: must not be negative",
			opts.Name, opts.ProbeInterval, opts.ProbeTimeout, opts.UpdateInterval)
	}
	for i, rc := range opts.Relabel {
		if rc == nil {
			return nil, fmt.Errorf("watch/promsd: %q: Options.Relabel[%d] is nil", opts.Name, i)
		}
		if err := rc.Validate(model.UTF8Validation); err != nil {
			return nil, fmt.Errorf("watch/promsd: %q: Options.Relabel[%d]: %w", opts.Name, i, err)
		}
	}
	opts.ProbeInterval = cmp.Or(opts.ProbeInterval, watch.DefaultProbeInterval)
	opts.ProbeTimeout = cmp.Or(opts.ProbeTimeout, watch.DefaultProbeTimeout)
	opts.UpdateInterval = cmp.Or(opts.UpdateInterval, DefaultUpdateInterval)
	opts.Settle = cmp.Or(opts.Settle, DefaultSettle)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	if reg != nil {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"source": opts.Name}, reg)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("watch/promsd: %q: %w", opts.Name, err)
	}
	sdReg := reg // Prometheus' discovery metrics, apart from a target provider's of the same name
	if sdReg != nil {
		sdReg = prometheus.WrapRegistererWithPrefix("promshard_members_", sdReg)
	}
	run, err := sdrun.New(opts.Name, opts.Configs, opts.UpdateInterval, opts.Logger, sdReg)
	if err != nil {
		return nil, fmt.Errorf("watch/promsd: %w", err)
	}
	return &Source{opts: opts, run: run, m: m, kick: make(chan struct{}, 1), found: make(chan []watch.Member, 1),
		bad: map[string]bool{}}, nil
}

// Unhealthy returns the collectors the discovery knows that are out of
// the ring (not healthy, failing their probe, settling, or drained with
// State maintenance), as of the last set sent.
func (s *Source) Unhealthy() []watch.Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.unhealthy)
}

// Run runs the discovery and sends the healthy member set once the
// discovery first answers, and again each time it changes, until ctx is
// done; it returns nil then, or an error when the configs cannot be
// applied. When the discovery fails, its mechanism keeps its last targets,
// and so the last set stands.
func (s *Source) Run(ctx context.Context, out chan<- []watch.Member) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- s.run.Run(ctx, func(gs []*targetgroup.Group) bool {
			ms := s.collectors(gs)
			select { // only the latest counts
			case <-s.found:
			default:
			}
			s.found <- ms
			return true
		})
	}()
	var (
		known    []watch.Member // the discovered collectors, with State for those not healthy
		have     bool
		probeOK  = map[string]bool{}
		damper   = watch.NewDamper(s.opts.Settle)
		joinT    *time.Timer
		joinC    <-chan time.Time
		probeT   *time.Ticker
		probeC   <-chan time.Time
		finished = func(err error) error { cancel(); return err }
	)
	if s.opts.Probe != nil {
		probeT = time.NewTicker(s.opts.ProbeInterval)
		defer probeT.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return finished(<-errc)
		case err := <-errc:
			if err != nil {
				return err
			}
			return nil
		case known = <-s.found:
			have = true
			if s.opts.Probe != nil {
				probeOK = s.probe(ctx, known)
				probeC = probeT.C
			}
		case <-probeC:
			probeOK = s.probe(ctx, known)
		case <-joinC:
			joinC = nil
		}
		if !have || ctx.Err() != nil {
			continue
		}
		var passing, failing []watch.Member
		for _, m := range known {
			if m.State == "" && s.opts.Probe != nil && !probeOK[m.ID] {
				m.State = watch.StateCritical
			}
			if m.State == "" {
				passing = append(passing, m)
			} else {
				failing = append(failing, m)
			}
		}
		now := time.Now()
		set, sick, next, changed := damper.Damp(passing, failing, now)
		if !next.IsZero() {
			if joinT != nil {
				joinT.Stop()
			}
			joinT = time.NewTimer(next.Sub(now))
			joinC = joinT.C
		}
		if !changed {
			continue
		}
		s.mu.Lock()
		s.unhealthy = sick
		s.mu.Unlock()
		s.m.members.Set(float64(len(set)))
		s.m.unhealthy.Set(float64(len(sick)))
		s.m.changes.Inc()
		s.opts.Logger.Info("member set changed", "source", s.opts.Name, "members", len(set), "out_of_ring", len(sick))
		select {
		case out <- slices.Clone(set):
		case <-ctx.Done():
			return finished(<-errc)
		}
	}
}

// probe probes every collector its discovery calls healthy, at once.
func (s *Source) probe(ctx context.Context, ms []watch.Member) map[string]bool {
	ok := make([]bool, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		if m.State != "" {
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, s.opts.ProbeTimeout)
			defer cancel()
			err := s.opts.Probe(pctx, m)
			ok[i] = err == nil
			if err != nil && ctx.Err() == nil {
				s.m.probeFailures.Inc()
				s.opts.Logger.Warn("probe failed", "source", s.opts.Name, "member", m.ID, "err", err)
			}
		})
	}
	wg.Wait()
	out := make(map[string]bool, len(ms))
	for i, m := range ms {
		out[m.ID] = ok[i]
	}
	return out
}

// collectors turns discovered groups into collectors, sorted by ID: the
// relabelled reserved labels give each its ID, address, weight, health and
// drain; a target without a usable address or ID is logged once and left
// out, and of two with one ID the first (in source order) is kept.
func (s *Source) collectors(gs []*targetgroup.Group) []watch.Member {
	slices.SortStableFunc(gs, func(a, b *targetgroup.Group) int { return strings.Compare(a.Source, b.Source) })
	var out []watch.Member
	seen := map[string]bool{}
	lb := labels.NewBuilder(labels.EmptyLabels())
	for _, g := range gs {
		for _, t := range g.Targets {
			lb.Reset(labels.EmptyLabels())
			for k, v := range g.Labels {
				lb.Set(string(k), string(v))
			}
			for k, v := range t {
				lb.Set(string(k), string(v))
			}
			setDefaults(lb)
			if !relabel.ProcessBuilder(lb, s.opts.Relabel...) {
				continue
			}
			m, err := member(lb.Labels())
			if err == nil && seen[m.ID] {
				err = fmt.Errorf("ID %q found twice; the first is kept", m.ID)
			}
			if err != nil {
				s.m.invalid.Inc()
				key := lb.Labels().String()
				s.mu.Lock()
				first := !s.bad[key]
				s.bad[key] = true
				s.mu.Unlock()
				if first {
					s.opts.Logger.Warn("a discovered target is no collector", "source", s.opts.Name, "labels", key, "err", err)
				}
				continue
			}
			seen[m.ID] = true
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b watch.Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Kubernetes' labels that say whether a collector is healthy.
const (
	k8sPodName         = "__meta_kubernetes_pod_name"
	k8sPodReady        = "__meta_kubernetes_pod_ready"
	k8sPodPhase        = "__meta_kubernetes_pod_phase"
	k8sEndpointReady   = "__meta_kubernetes_endpoint_ready"
	k8sSliceReady      = "__meta_kubernetes_endpointslice_endpoint_conditions_ready"
	k8sSliceTerminated = "__meta_kubernetes_endpointslice_endpoint_conditions_terminating"
)

// setDefaults gives the reserved labels their defaults, before the
// relabelling, where the target does not carry them.
func setDefaults(lb *labels.Builder) {
	if lb.Get(IDLabel) == "" {
		lb.Set(IDLabel, cmp.Or(lb.Get(k8sPodName), lb.Get(model.AddressLabel)))
	}
	if lb.Get(HealthyLabel) == "" {
		healthy := true
		if v := lb.Get(k8sPodReady); v != "" && (v != "true" || lb.Get(k8sPodPhase) != "Running") {
			healthy = false
		}
		if lb.Get(k8sEndpointReady) == "false" || lb.Get(k8sSliceReady) == "false" || lb.Get(k8sSliceTerminated) == "true" {
			healthy = false
		}
		lb.Set(HealthyLabel, strconv.FormatBool(healthy))
	}
}

// member reads a collector from its relabelled labels.
func member(ls labels.Labels) (watch.Member, error) {
	m := watch.Member{ID: ls.Get(IDLabel)}
	if m.ID == "" {
		return m, fmt.Errorf("%s is empty", IDLabel)
	}
	host, port, err := net.SplitHostPort(ls.Get(model.AddressLabel))
	if err != nil {
		return m, fmt.Errorf("%s %q: want host:port (relabel it to add the port): %w", model.AddressLabel, ls.Get(model.AddressLabel), err)
	}
	if m.Port, err = strconv.Atoi(port); err != nil || m.Port <= 0 || m.Port > 65535 || host == "" {
		return m, fmt.Errorf("%s %q: want host:port with a port 1-65535", model.AddressLabel, ls.Get(model.AddressLabel))
	}
	m.Address = host
	if v := ls.Get(WeightLabel); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 || n > weight.Max {
			return m, fmt.Errorf("%s %q: want 1 to %d", WeightLabel, v, weight.Max)
		}
		m.Weight = uint32(n)
	}
	switch {
	case ls.Get(DrainLabel) == "true":
		m.State = watch.StateMaintenance
	case ls.Get(HealthyLabel) == "false":
		m.State = watch.StateCritical
	}
	ls.Range(func(l labels.Label) {
		if !strings.HasPrefix(l.Name, "__") {
			if m.Meta == nil {
				m.Meta = map[string]string{}
			}
			m.Meta[l.Name] = l.Value
		}
	})
	return m, nil
}
