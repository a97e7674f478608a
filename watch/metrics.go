package watch

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// watchMetrics are one source's metrics. They carry the source kind and the
// service (or static source name) as constant labels, so several sources can
// share a registry.
type watchMetrics struct {
	queries     prometheus.Counter
	errors      prometheus.Counter
	changes     prometheus.Counter
	members     prometheus.Gauge
	lastSuccess prometheus.Gauge
	duration    prometheus.Histogram
}

func newWatchMetrics(reg prometheus.Registerer, source, service string) (*watchMetrics, error) {
	cl := prometheus.Labels{"source": source, "service": service}
	m := &watchMetrics{
		queries: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_watch_queries_total",
			Help: "Queries (Consul blocking queries or probe rounds) made.", ConstLabels: cl}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_watch_errors_total",
			Help: "Queries that failed; the last member set stood meanwhile.", ConstLabels: cl}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_watch_changes_total",
			Help: "Member sets reported (the first included).", ConstLabels: cl}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promshard_watch_members",
			Help: "Healthy members in the last reported set.", ConstLabels: cl}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promshard_watch_last_success_timestamp_seconds",
			Help: "Unix time of the last successful query.", ConstLabels: cl}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "promshard_watch_query_duration_seconds",
			Help:        "Duration of queries, blocking time included.",
			ConstLabels: cl, Buckets: []float64{.01, .1, 1, 10, 60, 300, 600}}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.queries, m.errors, m.changes, m.members, m.lastSuccess, m.duration} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("watch: register metrics for %s %q: a source with this name is already registered: %w", source, service, err)
			}
			return nil, fmt.Errorf("watch: register metrics for %s %q: %w", source, service, err)
		}
	}
	return m, nil
}
