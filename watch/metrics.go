package watch

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promshard/promshard/internal/promutil"
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
	if err := promutil.Register(reg, fmt.Sprintf("watch: register metrics for %s %q", source, service),
		m.queries, m.errors, m.changes, m.members, m.lastSuccess, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}
