package main

import "github.com/prometheus/client_golang/prometheus"

type appMetrics struct {
	reshards     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	moved        *prometheus.CounterVec
	perCollector *prometheus.GaugeVec
	lastSuccess  *prometheus.GaugeVec
}

func newAppMetrics(reg prometheus.Registerer) (*appMetrics, error) {
	m := &appMetrics{
		reshards: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_reshards_total",
			Help: "Reshards, by job and result (success or error)."}, []string{"job", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "promshard_reshard_duration_seconds",
			Help: "Duration of a reshard: fetch, assign, write, reload.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"job"}),
		moved: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_moved_targets_total",
			Help: "Targets whose collectors changed, by job."}, []string{"job"}),
		perCollector: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_assigned_targets",
			Help: "Targets assigned to each collector in the last reshard."}, []string{"job", "member"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_last_reshard_success_timestamp_seconds",
			Help: "Unix time of the last successful reshard, by job."}, []string{"job"}),
	}
	for _, c := range []prometheus.Collector{m.reshards, m.duration, m.moved, m.perCollector, m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
