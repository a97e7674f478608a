package audit

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/promshard/promshard/internal/promutil"
)

// metrics follow the project's convention: one Auditor serves several
// jobs, so job (and member) are variable labels.
type metrics struct {
	targets  *prometheus.GaugeVec
	lastRun  *prometheus.GaugeVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		targets: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_audit_targets",
			Help: "Targets with each audit state in the last audit, by job (a target can have several states)."},
			[]string{"shard_job", "state"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_audit_last_run_timestamp_seconds",
			Help: "Unix time of the last audit, by job."}, []string{"shard_job"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_audit_errors_total",
			Help: "Reads of a collector's targets that failed, by job and member."}, []string{"shard_job", "member"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "promshard_audit_duration_seconds",
			Help: "Duration of an audit: every collector read and compared.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)},
			[]string{"shard_job"}),
	}
	if err := promutil.Register(reg, "audit: register metrics", m.targets, m.lastRun, m.errors, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// observe exports a report; every state gets a series, zeros included.
func (m *metrics) observe(r *Report) {
	for _, s := range States() {
		m.targets.WithLabelValues(r.Job, string(s)).Set(float64(r.Counts[s]))
	}
	m.lastRun.WithLabelValues(r.Job).Set(float64(r.Time.UnixNano()) / 1e9)
	m.duration.WithLabelValues(r.Job).Observe(r.Took.Seconds())
}
