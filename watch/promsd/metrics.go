package promsd

import "github.com/prometheus/client_golang/prometheus"

// metrics are a Source's own metrics.
type metrics struct {
	members, unhealthy prometheus.Gauge
	changes            prometheus.Counter
	invalid            prometheus.Counter
	probeFailures      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promshard_watch_sd_members",
			Help: "Collectors in the member set of a service discovery source."}),
		unhealthy: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promshard_watch_sd_unhealthy_members",
			Help: "Collectors a service discovery source knows that are out of the ring."}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_watch_sd_changes_total",
			Help: "Member set changes sent by a service discovery source."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_watch_sd_invalid_targets_total",
			Help: "Discovered targets that are no collector (no address, a bad weight, a duplicate ID)."}),
		probeFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_watch_sd_probe_failures_total",
			Help: "Failed probes of collectors found by service discovery."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.members, m.unhealthy, m.changes, m.invalid, m.probeFailures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
