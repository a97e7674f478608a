package promshard

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/promshard/promshard/internal/promutil"
	"github.com/promshard/promshard/shard"
)

// metrics are the Sharder's own series. Every series has a shard_job
// label (never job: a scrape's own job label would rename it); per-member
// series of members that left are deleted.
type metrics struct {
	reshards    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	moved       *prometheus.CounterVec
	perMember   *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	excluded    *prometheus.GaugeVec
	repairs     *prometheus.CounterVec
	repaired    *prometheus.CounterVec

	drains          *prometheus.CounterVec
	handoffs        *prometheus.CounterVec
	handoffsPending *prometheus.GaugeVec
	handoffTime     *prometheus.HistogramVec

	leader        *prometheus.GaugeVec
	leaderChanges prometheus.Counter
	epoch         *prometheus.GaugeVec

	unplaced    *prometheus.GaugeVec
	dropped     *prometheus.GaugeVec
	isolated    *prometheus.GaugeVec
	overloaded  *prometheus.GaugeVec
	selfMissing *prometheus.GaugeVec
	guard       *prometheus.GaugeVec
	needed      *prometheus.GaugeVec
	unscraped   *prometheus.CounterVec
	doubled     *prometheus.CounterVec
	costTables  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reshards: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_reshards_total",
			Help: "Reshards, by job and result (success or error)."}, []string{"shard_job", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "promshard_reshard_duration_seconds",
			Help:    "Duration of a reshard: fetch, assign, write (reloads run in the background).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"shard_job"}),
		moved: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_moved_targets_total",
			Help: "Targets whose collectors changed, counted against the assignment last written, by job."}, []string{"shard_job"}),
		perMember: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_assigned_targets",
			Help: "Targets assigned to each collector in the last assignment written."}, []string{"shard_job", "member"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_last_reshard_success_timestamp_seconds",
			Help: "Unix time of the last reshard whose assignment the outputs accepted, by job."}, []string{"shard_job"}),
		excluded: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_excluded_members",
			Help: "Healthy collectors left out of the ring because an output cannot serve their ID, by job."}, []string{"shard_job"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_audit_repairs_total",
			Help: "Collectors repaired (resharded and reloaded) after the audit found them wrong for AuditRepairAfter."},
			[]string{"shard_job", "member"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_output_repairs_total",
			Help: "Collectors' outputs written again because they no longer held what was written (deleted or changed by someone else), by job."},
			[]string{"shard_job"}),
		drains: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_drains_total",
			Help: "Collectors that began to drain (Consul maintenance or the drain tag), by job."}, []string{"shard_job"}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_handoffs_total",
			Help: "Hand-offs ended, by job and result: confirmed (the new owner scrapes), timeout, cancelled."},
			[]string{"shard_job", "result"}),
		handoffsPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_handoffs_pending",
			Help: "Targets kept by their old owners until the new owners scrape them, by job."}, []string{"shard_job"}),
		handoffTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "promshard_handoff_duration_seconds",
			Help:    "From a move to the new owners' confirmed scrape, by job.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 10)}, []string{"shard_job"}),
		leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_leader",
			Help: "1 while this copy leads (writes the job's outputs), 0 on a standby; with Options.Elector."}, []string{"shard_job"}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_leader_changes_total",
			Help: "Times this copy became leader or stopped being one."}),
		epoch: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_assignment_epoch",
			Help: "Epoch of the job's assignment: published by this copy as leader, else the last one read."}, []string{"shard_job"}),
		isolated: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_isolated_targets",
			Help: "Isolated targets (heavy ones, given a collector of their own), by job and state: alone, or crowded when no collector was free."},
			[]string{"shard_job", "state"}),
		dropped: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_relabel_dropped_targets",
			Help: "Targets the job's relabel_configs left out of placement, in the last reshard, by job."}, []string{"shard_job"}),
		unplaced: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_unplaced_targets",
			Help: "Targets with fewer collectors than replicas because none had room within its max_series, by job."},
			[]string{"shard_job"}),
		overloaded: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_balance_overloaded_collectors",
			Help: "Collectors above their bound under the series last read, by job (targets move once they stay there)."},
			[]string{"shard_job"}),
		costTables: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_balance_cost_tables_total",
			Help: "Cost tables put in use by this copy as decider, by job."}, []string{"shard_job"}),
		needed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_collectors_needed",
			Help: "Collectors the measured series need within max_series, replicas included, plus headroom for losing one collector (or the biggest failure domain), by job (balance by series with a cap)."},
			[]string{"shard_job"}),
		unscraped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_unscraped_target_seconds_total",
			Help: "Target-seconds during which a target was scraped by fewer collectors than assigned, from the audit's reads (each audit's count over the time since the last one), by job."},
			[]string{"shard_job"}),
		doubled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshard_double_scraped_target_seconds_total",
			Help: "Target-seconds during which a target was scraped by more collectors than assigned, beyond a hand-off's planned overlap, from the audit's reads, by job."},
			[]string{"shard_job"}),
		guard: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_partition_guard_active",
			Help: "1 while the partition guard holds the job's assignment: too many collectors left at once, by job."},
			[]string{"shard_job"}),
		selfMissing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshard_self_missing",
			Help: "1 when, in self mode, the Self collector is neither a member nor registered (its output holds an empty list), by job."},
			[]string{"shard_job"}),
	}
	if err := promutil.Register(reg, "promshard: register metrics", m.reshards, m.duration, m.moved, m.perMember,
		m.lastSuccess, m.excluded, m.repairs, m.repaired, m.drains, m.handoffs, m.handoffsPending, m.handoffTime,
		m.leader, m.leaderChanges, m.epoch, m.unplaced, m.dropped, m.isolated, m.overloaded, m.costTables, m.selfMissing, m.guard, m.needed, m.unscraped, m.doubled); err != nil {
		return nil, err
	}
	return m, nil
}

// observe counts a finished reshard.
func (m *metrics) observe(job string, rep Report) {
	result := "success"
	if rep.Err != nil {
		result = "error"
	}
	m.reshards.WithLabelValues(job, result).Inc()
	m.duration.WithLabelValues(job).Observe(rep.Took.Seconds())
	if rep.Err == nil {
		m.moved.WithLabelValues(job).Add(float64(rep.Diff.Moved))
		m.lastSuccess.WithLabelValues(job).SetToCurrentTime()
	}
}

// assigned sets the per-member counts of a written assignment and deletes
// the series of members that are no longer in it.
func (m *metrics) assigned(job string, a, prev *shard.Assignment) {
	if prev != nil {
		for _, pm := range prev.Members {
			if _, ok := a.Groups[pm.ID]; !ok {
				m.perMember.DeleteLabelValues(job, pm.ID)
			}
		}
	}
	for _, mem := range a.Members {
		m.perMember.WithLabelValues(job, mem.ID).Set(float64(a.Count(mem.ID)))
	}
}
